//! The write side's storage interfaces and recovery, whatever the log is: the
//! writer appends and syncs through [`Storage`] (syncing on a thread of its own
//! through a [`Syncer`] where the log gives one), recovery reads back and cuts a
//! torn tail through [`Recoverable`] ([`recover`]). The file log (`log_file.rs`),
//! the JetStream stream (`jetstream_storage.rs`), the tests' failing disks and the
//! simulator's seeded one implement them.

use shared_events::source::{LogRead, Reader};
use shared_events::{Envelope, LogCursor, ScanError, TornTail, Watermark};
use std::io;
use std::time::{Duration, Instant};

/// How often a long replay reports progress.
pub const REPLAY_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// What the writer needs from durable storage.
pub trait Storage: Send + 'static {
    /// Appends all of `bytes` at the end of the log.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable (`fdatasync`). A log that other
    /// writers can reach (JetStream) may refuse what was appended because another
    /// writer got there first: the error then carries [`Fenced`].
    fn sync(&mut self) -> io::Result<()>;
    /// Tells readers, in any process, how far the log is durable. Called only after
    /// the events up to `mark` are durable (or written, with `--fsync never`).
    fn publish_durable(&mut self, mark: Watermark) -> io::Result<()>;

    /// A second handle on this log that syncs it and publishes the watermark from a
    /// thread of its own, while the writer appends the next batch through this one
    /// (the writer's pipeline). Only a log whose sync makes durable every byte
    /// appended before it, through either handle, may give one: a file, whose
    /// `fdatasync` on any descriptor covers the whole file. `None` (the default):
    /// the writer syncs in line, as a log that may fence its writers must.
    fn syncer(&mut self) -> io::Result<Option<Box<dyn Syncer>>> {
        Ok(None)
    }
}

/// The syncing half of a log that gives one ([`Storage::syncer`]).
pub trait Syncer: Send {
    /// Makes everything appended so far, by either handle, durable.
    fn sync(&mut self) -> io::Result<()>;
    /// As [`Storage::publish_durable`].
    fn publish_durable(&mut self, mark: Watermark) -> io::Result<()>;
}

/// What recovery needs besides [`Storage`]: the log's bytes as they are now
/// ([`LogRead`]), and cutting off a torn tail.
pub trait Recoverable: Storage + LogRead {
    /// Cuts the log to its first `len` bytes; the next append goes there.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// A storage error saying that another writer appended to a shared log first: of
/// the lines appended since the last successful sync, the first `landed` are durable
/// and the rest were refused and will never be written. Only a log that fences its
/// writers (JetStream, by expected last sequence) reports it; the writer then
/// answers the landed events, reloads the log, and decides the rest again.
#[derive(Debug, thiserror::Error)]
#[error(
    "another writer appended to the log first ({landed} of the batch's events landed): {message}"
)]
pub struct Fenced {
    pub landed: u64,
    pub message: String,
}

impl Fenced {
    /// The fence an I/O error carries, if it carries one.
    pub fn of(e: &io::Error) -> Option<&Fenced> {
        e.get_ref()?.downcast_ref()
    }
}

/// Why the log cannot be opened for writing.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "{path} is locked by another writer (is another command-svc or gateway running on it?)"
    )]
    Locked { path: String },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: {source}")]
    Scan { path: String, source: ScanError },
    #[error("{path}: event seq {seq} cannot be replayed: {message}")]
    Replay {
        path: String,
        seq: u64,
        message: String,
    },
    #[error(transparent)]
    JetStream(#[from] plumbing::jetstream::JetStreamError),
}

/// What replay found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The end of the valid log: the seq the next event gets, the byte length.
    pub cursor: LogCursor,
    /// The torn tail that was cut off, if any.
    pub torn: Option<TornTail>,
    /// Events replayed (after the starting point).
    pub replayed: u64,
}

/// Replays the log in `storage` (called `name` in errors) from `from` (the start, or
/// a snapshot's position) through `apply`, logging progress on long replays; then
/// cuts off a torn tail, syncs, and publishes the watermark (stamped `now_us`), so
/// the next append starts on a clean, durable line. Corruption, or an event `apply`
/// refuses, is an error, and the log is left as it was.
pub fn recover<S: Recoverable + ?Sized>(
    storage: &mut S,
    name: &str,
    from: LogCursor,
    now_us: u64,
    mut apply: impl FnMut(&Envelope) -> Result<(), String>,
) -> Result<Recovery, OpenError> {
    let path = name.to_owned();
    let io_err = |source| OpenError::Io {
        path: path.clone(),
        source,
    };
    // A stream's length is not known without reading it: no percentages then.
    let total_bytes = storage.length().map_err(io_err)?;
    let mut refused = None;
    let mut progress = ReplayProgress::new(from.offset, total_bytes);
    storage.locate(from);
    let report = shared_events::scan(Reader::new(&mut *storage, from.offset), from, |env, end| {
        if refused.is_none()
            && let Err(message) = apply(&env)
        {
            refused = Some((env.seq, message));
        }
        progress.event(end);
    })
    .map_err(|source| OpenError::Scan {
        path: path.clone(),
        source,
    })?;
    if let Some((seq, message)) = refused {
        return Err(OpenError::Replay { path, seq, message });
    }
    if let Some(torn) = &report.torn {
        tracing::warn!(
            path = %path, offset = torn.offset, bytes_dropped = torn.bytes, reason = %torn.reason,
            "torn write at the end of the log: cutting off {} bytes", torn.bytes
        );
        storage.truncate(torn.offset).map_err(io_err)?;
    }
    // What replay read may still sit only in the page cache (after a kill -9):
    // make it durable before telling readers it is.
    storage.sync().map_err(io_err)?;
    let mark = Watermark {
        seq: report.cursor.next_seq - 1,
        offset: report.cursor.offset,
        ts_us: now_us,
    };
    storage.publish_durable(mark).map_err(io_err)?;
    Ok(Recovery {
        cursor: report.cursor,
        torn: report.torn,
        replayed: report.cursor.next_seq - from.next_seq,
    })
}

/// Microseconds since the Unix epoch, by the wall clock.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Progress lines for long replays: events, rate, percent of the bytes (when the
/// log's length is known).
struct ReplayProgress {
    started: Instant,
    last_report: Instant,
    events: u64,
    start_offset: u64,
    total_bytes: Option<u64>,
}

impl ReplayProgress {
    fn new(start_offset: u64, total_bytes: Option<u64>) -> Self {
        let now = Instant::now();
        ReplayProgress {
            started: now,
            last_report: now,
            events: 0,
            start_offset,
            total_bytes,
        }
    }

    fn event(&mut self, end_offset: u64) {
        self.events += 1;
        // Looking at the clock every event would cost more than decoding it.
        if self.events.is_multiple_of(4096)
            && self.last_report.elapsed() >= REPLAY_PROGRESS_INTERVAL
        {
            self.last_report = Instant::now();
            let rate = self.events as f64 / self.started.elapsed().as_secs_f64();
            let Some(total_bytes) = self.total_bytes else {
                tracing::info!(
                    events = self.events,
                    events_per_s = rate as u64,
                    "replaying the log: {} events, {:.0} events/s",
                    self.events,
                    rate
                );
                return;
            };
            let span = total_bytes.saturating_sub(self.start_offset).max(1);
            let percent = 100.0 * end_offset.saturating_sub(self.start_offset) as f64 / span as f64;
            tracing::info!(
                events = self.events,
                events_per_s = rate as u64,
                percent = format_args!("{percent:.1}"),
                "replaying the log: {} events, {:.0} events/s, {percent:.1}%",
                self.events,
                rate
            );
        }
    }
}
