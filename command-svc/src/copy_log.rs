//! `command-svc copy-log`: moving a log file into a JetStream stream (from one
//! machine to a cluster), resumable, published the way the writer publishes.

use shared_events::LogCursor;
use std::io::Write;
use std::path::Path;

/// Bytes of the log file `copy_log` reads at a time.
pub const COPY_CHUNK_BYTES: usize = 1 << 20;

/// Copies a log file into a JetStream stream: the move from one machine to a
/// cluster. Every complete line becomes one message at its seq, published the way
/// the writer publishes (same `Nats-Msg-Id`, fenced by expected last sequence), a
/// group commit's worth at a time. The stream is created with `replicas` copies if
/// missing; it must be empty or hold the file's first lines (a copy that was
/// interrupted goes on where it stopped). A torn last line is not copied. The file's
/// snapshots stay valid for the stream (a stream's byte offsets are the file's). Stop
/// the writer first. Prints progress to `out`; returns the events the stream holds.
///
/// One loop over the file that checks the stream's prefix, publishes and reports
/// as it goes; its parts would share all of its state, so it stays one function.
pub fn copy_log(
    from: &Path,
    to: &shared_events::JetStreamUrl,
    replicas: usize,
    out: &mut impl Write,
) -> Result<u64, String> {
    use crate::storage::Storage;
    let js = crate::connect(to, "foldbook copy-log").map_err(|e| e.to_string())?;
    let (mut storage, bounds) = crate::jetstream_storage::JetStreamStorage::open(js, replicas)
        .map_err(|e| e.to_string())?;
    let mut file = std::fs::File::open(from).map_err(|e| format!("{}: {e}", from.display()))?;
    let already = bounds.last_seq;
    // Where line `already + 1` starts in the file: known once the lines before it are read.
    let mut resume_offset = (already == 0).then_some(0u64);
    let mut read_bytes = 0u64;
    let mut started = false;
    writeln!(
        out,
        "copying {} to {to} (the stream holds {already} events)",
        from.display()
    )
    .map_err(|e| e.to_string())?;
    let mut cursor = LogCursor::start();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; COPY_CHUNK_BYTES];
    let mut batch: Vec<u8> = Vec::new();
    let mut in_batch = 0usize;
    let mut prefix_checked = already == 0;
    loop {
        let n = std::io::Read::read(&mut file, &mut chunk).map_err(|e| e.to_string())?;
        buf.extend_from_slice(&chunk[..n]);
        let mut failure = None;
        let used = cursor
            .decode_lines(&buf, |env, raw| {
                if failure.is_some() {
                    return;
                }
                read_bytes += raw.len() as u64;
                if env.seq == already {
                    resume_offset = Some(read_bytes);
                }
                if env.seq == already && !prefix_checked {
                    // The stream's last message must be this very line.
                    match storage.message(env.seq) {
                        Ok(Some(m)) if m[..] == raw[..raw.len() - 1] => prefix_checked = true,
                        Ok(_) => {
                            failure = Some(format!(
                                "the stream's message {} is not the file's line {}: they are different logs",
                                env.seq, env.seq
                            ))
                        }
                        Err(e) => failure = Some(e.to_string()),
                    }
                }
                if env.seq > already {
                    batch.extend_from_slice(raw);
                    in_batch += 1;
                }
            })
            .map_err(|bad| format!("{}: {bad}", from.display()))?;
        if let Some(failure) = failure {
            return Err(failure);
        }
        buf.drain(..used);
        let eof = n == 0;
        if in_batch >= crate::writer::BATCH_EVENTS_MAX || (eof && in_batch > 0) {
            if !started {
                let offset = resume_offset.expect("the lines up to the stream's were read");
                storage.continue_after(already, offset);
                started = true;
            }
            storage.append(&batch).map_err(|e| e.to_string())?;
            storage.sync().map_err(|e| format!("publishing: {e}"))?;
            batch.clear();
            in_batch = 0;
        }
        if eof {
            break;
        }
    }
    let head = cursor.next_seq - 1;
    if head < already {
        return Err(format!(
            "the stream holds {already} events, the file only {head}: they are different logs"
        ));
    }
    if !prefix_checked {
        return Err("the stream's last message was not found in the file".to_owned());
    }
    if !buf.is_empty() {
        writeln!(out, "not copied: a torn last line of {} bytes", buf.len())
            .map_err(|e| e.to_string())?;
    }
    writeln!(
        out,
        "copied {} events; the stream holds seq 1..={head}",
        head - already
    )
    .map_err(|e| e.to_string())?;
    Ok(head)
}
