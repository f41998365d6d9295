//! `command-svc verify`: an offline check of a log (file or stream) without locking
//! it: checksums, seq continuity, the torn tail, and that every event fits the book.

use crate::book::Book;
use shared_events::{BookState, LogCursor, LogLocation, LogRead, ScanError};
use std::io::Write;
use std::path::Path;

/// Checks a log offline, without locking it (safe while a writer runs): every line's
/// checksum and seq, and, given the genesis state, that every event fits the book.
/// Prints a report to `out`. Returns whether the log is usable (a torn tail is; it is
/// cut off at the next start). A stream is read through JetStream from seq 1.
///
/// One pass over the log that reports as it goes; its parts would share all of
/// its state (cursor, book, counts), so it stays one function.
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
    let (mut placed, mut cancelled, mut transfers) = (0u64, 0u64, 0u64);
    let (mut amended, mut cancelled_all) = (0u64, 0u64);
    // Lines by the schema version they were written with (older ones are read
    // through the upcasters).
    let mut versions: std::collections::BTreeMap<u32, u64> = Default::default();
    let mut misfit: Option<String> = None;
    let result = shared_events::scan(reader, LogCursor::start(), |env, _| {
        *versions.entry(env.v).or_default() += 1;
        match env.event {
            shared_events::Event::OrderPlaced { .. } => placed += 1,
            shared_events::Event::OrderCancelled { .. } => cancelled += 1,
            shared_events::Event::Deposited { .. } | shared_events::Event::Withdrawn { .. } => {
                transfers += 1
            }
            shared_events::Event::OrderAmended { .. } => amended += 1,
            shared_events::Event::OrdersCancelled { .. } => cancelled_all += 1,
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
                "events: {head} (seq 1..={head}): {placed} OrderPlaced, {cancelled} OrderCancelled{}{}{}",
                if transfers > 0 {
                    format!(", {transfers} Deposited or Withdrawn")
                } else {
                    String::new()
                },
                if amended > 0 {
                    format!(", {amended} OrderAmended")
                } else {
                    String::new()
                },
                if cancelled_all > 0 {
                    format!(", {cancelled_all} OrdersCancelled")
                } else {
                    String::new()
                }
            )?;
            writeln!(out, "head seq: {head}")?;
            let by_version: Vec<String> =
                versions.iter().map(|(v, n)| format!("v{v}: {n}")).collect();
            writeln!(
                out,
                "schema versions: {} (this build writes v{})",
                if by_version.is_empty() {
                    "none".to_owned()
                } else {
                    by_version.join(", ")
                },
                shared_events::SCHEMA_VERSION
            )?;
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
