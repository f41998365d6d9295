//! The file log as the writer sees it: opened under an exclusive lock, appended to,
//! `fdatasync`ed, with the durable watermark published for readers after each sync.
//! The writer and recovery reach it through the interfaces in [`crate::storage`], so
//! tests can put a failing disk in its place, the simulator (`sim/`) a seeded one,
//! and `--log nats://…` a JetStream stream (`jetstream_storage.rs`).

use crate::storage::{OpenError, Recoverable, Storage, Syncer};
use shared_events::Watermark;
use shared_events::source::LogRead;
use shared_events::watermark::{self, WatermarkFile};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The log file, opened for appending and exclusively locked for as long as it lives.
#[derive(Debug)]
pub struct LogFile {
    file: File,
    path: PathBuf,
    /// `<log>.durable`, rewritten after every sync.
    watermark: WatermarkFile,
}

impl LogFile {
    /// Opens (creating if needed) and locks the log at `path`.
    pub fn open(path: &Path) -> Result<LogFile, OpenError> {
        let io_err = |source| OpenError::Io {
            path: path.display().to_string(),
            source,
        };
        let existed = path.exists();
        // Appends always go to the end of the file, also after a torn tail was cut.
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
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

    /// `fdatasync` on a duplicate descriptor syncs the same file.
    fn syncer(&mut self) -> io::Result<Option<Box<dyn Syncer>>> {
        Ok(Some(Box::new(FileSyncer {
            file: self.file.try_clone()?,
            watermark: self.watermark.try_clone()?,
        })))
    }
}

/// The syncing half of a [`LogFile`]: a duplicate of its descriptor and of its
/// watermark's.
#[derive(Debug)]
struct FileSyncer {
    file: File,
    watermark: WatermarkFile,
}

impl Syncer for FileSyncer {
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn publish_durable(&mut self, mark: Watermark) -> io::Result<()> {
        self.watermark.publish(mark)
    }
}

impl LogRead for LogFile {
    fn length(&mut self) -> io::Result<Option<u64>> {
        LogRead::length(&mut self.file)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        LogRead::read_at(&mut self.file, offset, buf)
    }
}

impl Recoverable for LogFile {
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}
