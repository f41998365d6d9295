//! The file log as the writer sees it: open it under an exclusive lock, replay it
//! (cutting off a torn tail, refusing corruption), then append and `fdatasync`.
//! The writer talks to it through [`Storage`], so tests can put a failing disk in
//! its place.

use shared_events::{Envelope, LogCursor, ScanError, TornTail};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What the writer needs from durable storage.
pub trait Storage: Send + 'static {
    /// Appends all of `bytes` at the end of the log.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
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
}

/// What replay found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The end of the valid log: the seq the next event gets, the byte length.
    pub cursor: LogCursor,
    /// The torn tail that was cut off, if any.
    pub torn: Option<TornTail>,
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
        Ok(LogFile {
            file,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replays the whole log through `apply`, then cuts off a torn tail so the next
    /// append starts on a clean line. Corruption, or an event `apply` refuses, is an error.
    pub fn recover(
        &mut self,
        mut apply: impl FnMut(&Envelope) -> Result<(), String>,
    ) -> Result<Recovery, OpenError> {
        let path = self.path.display().to_string();
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|source| OpenError::Io {
                path: path.clone(),
                source,
            })?;
        let mut refused = None;
        let report = shared_events::scan(&mut self.file, LogCursor::start(), |env| {
            if refused.is_none()
                && let Err(message) = apply(&env)
            {
                refused = Some((env.seq, message));
            }
        })
        .map_err(|source| OpenError::Scan {
            path: path.clone(),
            source,
        })?;
        if let Some((seq, message)) = refused {
            return Err(OpenError::Replay { path, seq, message });
        }
        let io_err = |source| OpenError::Io {
            path: path.clone(),
            source,
        };
        if let Some(torn) = &report.torn {
            tracing::warn!(
                path = %path, offset = torn.offset, bytes_dropped = torn.bytes, reason = %torn.reason,
                "torn write at the end of the log: cutting off {} bytes", torn.bytes
            );
            self.file.set_len(torn.offset).map_err(io_err)?;
            self.file.sync_all().map_err(io_err)?;
        }
        self.file
            .seek(SeekFrom::Start(report.cursor.offset))
            .map_err(io_err)?;
        Ok(Recovery {
            cursor: report.cursor,
            torn: report.torn,
        })
    }
}

impl Storage for LogFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}
