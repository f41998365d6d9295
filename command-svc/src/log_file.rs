//! The file log as the writer sees it: open it under an exclusive lock, replay it
//! (cutting off a torn tail, refusing corruption), then append, `fdatasync`, and
//! publish the durable watermark for readers. The writer talks to it through
//! [`Storage`], so tests can put a failing disk in its place.

use shared_events::watermark::{self, WatermarkFile};
use shared_events::{Envelope, LogCursor, ScanError, TornTail, Watermark};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a long replay reports progress.
pub const REPLAY_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// What the writer needs from durable storage.
pub trait Storage: Send + 'static {
    /// Appends all of `bytes` at the end of the log.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
    /// Tells readers, in any process, how far the log is durable. Called only after
    /// the events up to `mark` are durable (or written, with `--fsync never`).
    fn publish_durable(&mut self, mark: Watermark) -> io::Result<()>;
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
}

/// The log file, opened for appending and exclusively locked for as long as it lives.
#[derive(Debug)]
pub struct LogFile {
    file: File,
    path: PathBuf,
    /// `<log>.durable`, rewritten after every sync.
    watermark: WatermarkFile,
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

impl LogFile {
    /// Opens (creating if needed) and locks the log at `path`.
    pub fn open(path: &Path) -> Result<LogFile, OpenError> {
        let io_err = |source| OpenError::Io {
            path: path.display().to_string(),
            source,
        };
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(OpenError::Locked {
                    path: path.display().to_string(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        if !existed {
            // The new file's directory entry must be durable too, or a power loss
            // could lose the whole log with its acknowledged events.
            sync_parent_dir(path).map_err(io_err)?;
        }
        let watermark = WatermarkFile::create(&watermark::path_for(path)).map_err(io_err)?;
        Ok(LogFile {
            file,
            path: path.to_owned(),
            watermark,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replays the log from `from` (the start, or a snapshot's position) through
    /// `apply`, logging progress on long replays; then cuts off a torn tail, syncs, and
    /// publishes the watermark, so the next append starts on a clean, durable line.
    /// Corruption, or an event `apply` refuses, is an error.
    pub fn recover(
        &mut self,
        from: LogCursor,
        mut apply: impl FnMut(&Envelope) -> Result<(), String>,
    ) -> Result<Recovery, OpenError> {
        let path = self.path.display().to_string();
        let io_err = |source| OpenError::Io {
            path: path.clone(),
            source,
        };
        let total_bytes = self.file.metadata().map_err(io_err)?.len();
        self.file
            .seek(SeekFrom::Start(from.offset))
            .map_err(io_err)?;
        let mut refused = None;
        let mut progress = ReplayProgress::new(from.offset, total_bytes);
        let report = shared_events::scan(&mut self.file, from, |env, end| {
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
            self.file.set_len(torn.offset).map_err(io_err)?;
        }
        // What replay read may still sit only in the page cache (after a kill -9):
        // make it durable before telling readers it is.
        self.file.sync_all().map_err(io_err)?;
        self.file
            .seek(SeekFrom::Start(report.cursor.offset))
            .map_err(io_err)?;
        let mark = Watermark::now(report.cursor.next_seq - 1, report.cursor.offset);
        self.publish_durable(mark).map_err(io_err)?;
        Ok(Recovery {
            cursor: report.cursor,
            torn: report.torn,
            replayed: report.cursor.next_seq - from.next_seq,
        })
    }
}

/// Progress lines for long replays: events, rate, percent of the bytes.
struct ReplayProgress {
    started: Instant,
    last_report: Instant,
    events: u64,
    start_offset: u64,
    total_bytes: u64,
}

impl ReplayProgress {
    fn new(start_offset: u64, total_bytes: u64) -> Self {
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
            let span = (self.total_bytes - self.start_offset).max(1);
            let percent = 100.0 * (end_offset - self.start_offset) as f64 / span as f64;
            let rate = self.events as f64 / self.started.elapsed().as_secs_f64();
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

impl Storage for LogFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn publish_durable(&mut self, mark: Watermark) -> io::Result<()> {
        self.watermark.publish(mark)
    }
}

fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}
