//! The narrow read interface to a log, shared by everything that reads one: the
//! write side's recovery, the read side's tailer, the snapshot check. A log is a
//! sequence of bytes that can be read at an offset, and has a length (or does not
//! exist yet). [`FileLog`] is the file on disk; the simulator
//! (`gateway::sim`) provides an in-memory disk with seeded faults; a JetStream
//! stream (`command-svc/src/jetstream.rs`) maps byte offsets onto its messages, one
//! message per line. Its byte offsets are computed (each line and its newline, from
//! seq 1 on), not stored, so such a log must be told where a line starts
//! ([`LogRead::locate`]) before it is read from a new place, and checks a snapshot
//! by seq ([`LogRead::check_continues`]); plumbing's `lines::LineWindow` holds the
//! lines such a log has read, addressed by offset.
//!
//! Reading never changes the log, so a reader needs no lock and may run in any
//! process while the writer appends.

use crate::codec::LogCursor;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Read access to a log.
pub trait LogRead {
    /// The log's length in bytes, or `None` while it does not exist (or, for a log
    /// that is not a file, while its length is not known without reading it all).
    fn length(&mut self) -> io::Result<Option<u64>>;

    /// Reads bytes from `offset` into `buf`: at least one unless at or past the end
    /// of the log (0 there), at most `buf.len()`. Files give as many as there are; a
    /// log of messages may give fewer, so callers that want a full buffer use
    /// [`read_full_at`].
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// Says that the line with seq `at.next_seq` starts at byte `at.offset`, before
    /// reading from there. A file knows its bytes and ignores this; a log of
    /// messages (JetStream) starts fetching at that seq, and computes offsets from
    /// there.
    fn locate(&mut self, at: LogCursor) {
        let _ = at;
    }

    /// Whether this log continues a snapshot taken at event `seq`, where the log
    /// was `offset` bytes long. A file checks its bytes
    /// ([`crate::snapshot::check_log_continues`]); a stream checks by seq.
    fn check_continues(&mut self, seq: u64, offset: u64) -> Result<(), String> {
        crate::snapshot::check_log_continues(self, seq, offset)
    }
}

impl<L: LogRead + ?Sized> LogRead for &mut L {
    fn length(&mut self) -> io::Result<Option<u64>> {
        (**self).length()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        (**self).read_at(offset, buf)
    }

    fn locate(&mut self, at: LogCursor) {
        (**self).locate(at)
    }

    fn check_continues(&mut self, seq: u64, offset: u64) -> Result<(), String> {
        (**self).check_continues(seq, offset)
    }
}

impl<L: LogRead + ?Sized> LogRead for Box<L> {
    fn length(&mut self) -> io::Result<Option<u64>> {
        (**self).length()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        (**self).read_at(offset, buf)
    }

    fn locate(&mut self, at: LogCursor) {
        (**self).locate(at)
    }

    fn check_continues(&mut self, seq: u64, offset: u64) -> Result<(), String> {
        (**self).check_continues(seq, offset)
    }
}

/// Fills `buf` from `offset` as far as the log goes; returns the bytes read.
pub fn read_full_at(
    log: &mut (impl LogRead + ?Sized),
    offset: u64,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match log.read_at(offset + filled as u64, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A log read sequentially from an offset, as [`std::io::Read`] (for
/// [`crate::scan`]).
pub struct Reader<L> {
    log: L,
    offset: u64,
}

impl<L: LogRead> Reader<L> {
    pub fn new(log: L, offset: u64) -> Self {
        Reader { log, offset }
    }
}

impl<L: LogRead> Read for Reader<L> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.log.read_at(self.offset, buf)?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl LogRead for File {
    fn length(&mut self) -> io::Result<Option<u64>> {
        Ok(Some(self.metadata()?.len()))
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
}

/// The log file at a path, opened on first use (it may not exist yet), read with
/// `pread`. Once opened it stays open: a log replaced behind a reader's back is
/// not followed (the reader notices it is shorter than what it read).
#[derive(Debug)]
pub struct FileLog {
    path: PathBuf,
    file: Option<File>,
}

impl FileLog {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileLog {
            path: path.into(),
            file: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, or `None` while it does not exist.
    fn file(&mut self) -> io::Result<Option<&mut File>> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(self.file.as_mut())
    }
}

impl LogRead for FileLog {
    fn length(&mut self) -> io::Result<Option<u64>> {
        match self.file()? {
            Some(f) => LogRead::length(f),
            None => Ok(None),
        }
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        match self.file()? {
            Some(f) => LogRead::read_at(f, offset, buf),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_log_waits_for_the_file_then_reads_at_offsets() {
        let dir = std::env::temp_dir().join(format!("source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.txt");
        let _ = std::fs::remove_file(&path);
        let mut log = FileLog::new(&path);
        assert_eq!(log.length().unwrap(), None);
        assert_eq!(log.read_at(0, &mut [0u8; 4]).unwrap(), 0);
        std::fs::write(&path, b"hello world").unwrap();
        assert_eq!(log.length().unwrap(), Some(11));
        let mut buf = [0u8; 32];
        let n = read_full_at(&mut log, 6, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"world");
        let mut all = Vec::new();
        Reader::new(&mut log, 2).read_to_end(&mut all).unwrap();
        assert_eq!(all, b"llo world");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
