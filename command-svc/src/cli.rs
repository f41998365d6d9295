//! Command-line flags of the write side, shared by `command-svc` and the combined
//! `gateway` (which flattens them into its own), and the offline `verify` check.

use crate::book::Book;
use crate::{Config, FsyncMode, checkpoint};
use shared_events::{BookState, LogCursor, LogLocation, LogRead, ScanError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Files and durability of the write side.
#[derive(Debug, Clone, clap::Args)]
pub struct WriteArgs {
    /// Genesis state file.
    #[arg(long, env = "FOLDBOOK_INIT", default_value = "init.txt")]
    pub init: PathBuf,
    /// Event log: a file (created if missing; locked by the writer while running),
    /// or a NATS JetStream stream, `nats://HOST:PORT[,HOST:PORT...]/STREAM` (created
    /// if missing).
    #[arg(long, env = "FOLDBOOK_LOG", default_value = "log.txt")]
    pub log: LogLocation,
    /// `always`: fdatasync before every answer; `never`: no durability (benchmarks).
    /// A JetStream log always waits for the server's acknowledgement.
    #[arg(long, env = "FOLDBOOK_FSYNC", value_enum, default_value_t)]
    pub fsync: FsyncMode,
    /// Snapshot directory (default: `snapshots/` beside a log file,
    /// `snapshots-<STREAM>/` in the working directory for a stream).
    #[arg(long, env = "FOLDBOOK_SNAPSHOTS")]
    pub snapshots: Option<PathBuf>,
    /// Copies a new JetStream stream keeps (1 on one server; 3 on a cluster of 3 or
    /// more, with `sync_interval: always`). An existing stream is left as it is.
    #[arg(long, env = "FOLDBOOK_NATS_REPLICAS", default_value_t = crate::NATS_REPLICAS_DEFAULT)]
    pub nats_replicas: usize,
    /// Events between two snapshots (0: only at clean shutdown).
    #[arg(long, env = "FOLDBOOK_SNAPSHOT_EVERY", default_value_t = checkpoint::SNAPSHOT_EVERY_DEFAULT)]
    pub snapshot_every: u64,
    /// Idempotency keys remembered (the most recent ones; 0 turns keys off).
    #[arg(long, env = "FOLDBOOK_IDEMPOTENCY_KEYS", default_value_t = crate::idempotency::IDEMPOTENCY_KEYS_KEPT_DEFAULT)]
    pub idempotency_keys: usize,
    /// Bearer tokens (`TOKEN USER` or `sha256:HEX USER` per line): when given, every
    /// write needs the token of the user in its path.
    #[arg(long, env = "FOLDBOOK_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,
}

impl WriteArgs {
    /// The auth table, if `--auth-file` was given.
    pub fn auth(&self) -> Result<Option<std::sync::Arc<shared_events::auth::AuthTable>>, String> {
        self.auth_file
            .as_deref()
            .map(|path| shared_events::auth::AuthTable::load(path).map(std::sync::Arc::new))
            .transpose()
    }
}

impl WriteArgs {
    pub fn config(&self) -> Config {
        Config {
            init: self.init.clone(),
            log: self.log.clone(),
            fsync: self.fsync,
            snapshots: self.snapshots.clone(),
            snapshot_every: self.snapshot_every,
            idempotency_keys: self.idempotency_keys,
            nats_replicas: self.nats_replicas,
        }
    }
}

/// Checks a log offline, without locking it (safe while a writer runs): every line's
/// checksum and seq, and, given the genesis state, that every event fits the book.
/// Prints a report to `out`. Returns whether the log is usable (a torn tail is; it is
/// cut off at the next start). A stream is read through JetStream from seq 1.
pub fn verify(
    log: &LogLocation,
    init: Option<&Path>,
    out: &mut impl Write,
) -> std::io::Result<bool> {
    let (reader, size): (Box<dyn std::io::Read + Send>, String) = match log {
        LogLocation::File(path) => {
            let file = std::fs::File::open(path)?;
            let bytes = file.metadata()?.len();
            (
                Box::new(std::io::BufReader::new(file)),
                format!("{bytes} bytes"),
            )
        }
        LogLocation::JetStream(url) => {
            let js = crate::connect(url, "foldbook verify").map_err(std::io::Error::other)?;
            let bounds = js.bounds()?.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "the stream does not exist")
            })?;
            let mut stream = crate::jetstream_storage::JetStreamLog(
                plumbing::jetstream::JetStreamReader::new(js),
            );
            stream.locate(LogCursor::start());
            (
                Box::new(shared_events::source::Reader::new(stream, 0)),
                format!(
                    "JetStream stream, seq {}..={}",
                    bounds.first_seq, bounds.last_seq
                ),
            )
        }
    };
    let mut book = match init {
        Some(path) => match BookState::load(path) {
            Ok(state) => Some(Book::from_state(&state)),
            Err(e) => {
                writeln!(out, "cannot check events against the genesis state: {e}")?;
                None
            }
        },
        None => None,
    };
    let (mut placed, mut cancelled) = (0u64, 0u64);
    let mut misfit: Option<String> = None;
    let result = shared_events::scan(reader, LogCursor::start(), |env, _| {
        match env.event {
            shared_events::Event::OrderPlaced { .. } => placed += 1,
            shared_events::Event::OrderCancelled { .. } => cancelled += 1,
        }
        if misfit.is_none()
            && let Some(book) = book.as_mut()
            && let Err(e) = book.apply(&env.event)
        {
            misfit = Some(format!("seq {}: {e}", env.seq));
        }
    });
    writeln!(out, "log: {log} ({size})")?;
    let ok = match result {
        Ok(report) => {
            let head = report.cursor.next_seq - 1;
            writeln!(
                out,
                "events: {head} (seq 1..={head}): {placed} OrderPlaced, {cancelled} OrderCancelled"
            )?;
            writeln!(out, "head seq: {head}")?;
            match &report.torn {
                Some(t) => writeln!(
                    out,
                    "torn tail: {} bytes at offset {} ({}); the next start cuts it off",
                    t.bytes, t.offset, t.reason
                )?,
                None => writeln!(out, "torn tail: none")?,
            }
            match (&book, &misfit) {
                (_, Some(m)) => writeln!(out, "fold: an event does not fit the book: {m}")?,
                (Some(b), None) => writeln!(
                    out,
                    "fold: every event fits; {} orders rest",
                    b.resting_count()
                )?,
                (None, None) => writeln!(out, "fold: not checked (no genesis state)")?,
            }
            writeln!(out, "first corrupt line: none")?;
            misfit.is_none()
        }
        Err(ScanError::Corrupt(bad)) => {
            writeln!(
                out,
                "events before the corruption: {}",
                bad.expected_seq - 1
            )?;
            writeln!(out, "first corrupt line: {bad}")?;
            false
        }
        Err(ScanError::Io(e)) => return Err(e),
    };
    writeln!(out, "{}", if ok { "OK" } else { "NOT OK" })?;
    Ok(ok)
}

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
pub fn copy_log(
    from: &Path,
    to: &shared_events::JetStreamUrl,
    replicas: usize,
    out: &mut impl Write,
) -> Result<u64, String> {
    use crate::log_file::Storage;
    let js = crate::connect(to, "foldbook copy-log").map_err(|e| e.to_string())?;
    let (mut storage, bounds) = crate::jetstream_storage::JetStreamStorage::open(js, replicas)
        .map_err(|e| e.to_string())?;
    let mut file = std::fs::File::open(from).map_err(|e| format!("{}: {e}", from.display()))?;
    let already = bounds.last_seq;
    storage.continue_after(already);
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
