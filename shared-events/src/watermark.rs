//! The durable watermark: a small side file (`<log>.durable`) in which the writer
//! publishes, after every `fdatasync`, how far the log is durable. Readers in any
//! process apply the log only up to it, so they never show an event that a power
//! loss could still take back.
//!
//! Format: one line of exactly [`WATERMARK_BYTES`] bytes, rewritten in place:
//! `SEQ OFFSET TS CRC\n`: the durable seq, the log's durable byte length, and the time
//! it became durable (microseconds since the Unix epoch), as 20 zero-padded decimal
//! digits each, separated by single spaces, then a space and the CRC-32C of the 62
//! bytes before it as 8 lowercase hex digits. Readers measure their lag from `TS`:
//! the moment the writer could acknowledge the events. A reader that catches a
//! rewrite half done sees a checksum mismatch and simply reads again later. The file
//! is a hint, not a record: it is not fsynced, and the writer rewrites it at every
//! start after recovery. It never runs ahead of the log, since it is written after
//! the log's sync.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Length of the watermark file, newline included.
pub const WATERMARK_BYTES: usize = 3 * 21 + 8 + 1;
/// Bytes covered by the checksum: the three numbers and the spaces between them.
const COVERED_BYTES: usize = 3 * 21 - 1;

/// How far the log is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Watermark {
    /// The last durable event.
    pub seq: u64,
    /// The log's durable length in bytes: the end of line `seq`.
    pub offset: u64,
    /// When it became durable, microseconds since the Unix epoch.
    pub ts_us: u64,
}

/// The watermark file that goes with a log file.
pub fn path_for(log: &Path) -> PathBuf {
    let mut name = log
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".durable");
    log.with_file_name(name)
}

impl Watermark {
    /// A watermark stamped with the current time.
    pub fn now(seq: u64, offset: u64) -> Watermark {
        let ts_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Watermark { seq, offset, ts_us }
    }

    pub fn encode(&self) -> [u8; WATERMARK_BYTES] {
        // Written every group commit: digits into a fixed array, no formatting.
        let mut line = [b' '; WATERMARK_BYTES];
        for (at, n) in [(0, self.seq), (21, self.offset), (42, self.ts_us)] {
            let mut n = n;
            for digit in line[at..at + 20].iter_mut().rev() {
                *digit = b'0' + (n % 10) as u8;
                n /= 10;
            }
        }
        let crc = crc32c::crc32c(&line[..COVERED_BYTES]);
        for (i, digit) in line[63..71].iter_mut().enumerate() {
            *digit = b"0123456789abcdef"[(crc >> (28 - 4 * i) & 0xf) as usize];
        }
        line[WATERMARK_BYTES - 1] = b'\n';
        line
    }

    /// `None` for anything that is not a whole, valid watermark line.
    pub fn decode(bytes: &[u8]) -> Option<Watermark> {
        if bytes.len() != WATERMARK_BYTES
            || [20, 41, 62].iter().any(|&i| bytes[i] != b' ')
            || bytes[WATERMARK_BYTES - 1] != b'\n'
        {
            return None;
        }
        let number = |b: &[u8]| -> Option<u64> {
            if !b.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(b).ok()?.parse().ok()
        };
        let crc = std::str::from_utf8(&bytes[63..71]).ok()?;
        if crc.bytes().any(|c| c.is_ascii_uppercase())
            || u32::from_str_radix(crc, 16).ok()? != crc32c::crc32c(&bytes[..COVERED_BYTES])
        {
            return None;
        }
        Some(Watermark {
            seq: number(&bytes[..20])?,
            offset: number(&bytes[21..41])?,
            ts_us: number(&bytes[42..62])?,
        })
    }
}

/// The writer's handle on the watermark file.
#[derive(Debug)]
pub struct WatermarkFile {
    file: File,
    /// Whether the file is known to be exactly [`WATERMARK_BYTES`] long: cut once,
    /// at the first publish, not at every one (each cut is a syscall and a change
    /// notification that wakes every reader).
    sized: std::sync::atomic::AtomicBool,
}

impl WatermarkFile {
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(WatermarkFile {
            file,
            sized: false.into(),
        })
    }

    /// A second handle on the same file (for the thread that syncs the log).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(WatermarkFile {
            file: self.file.try_clone()?,
            sized: false.into(),
        })
    }

    /// Rewrites the watermark in place (one `pwrite`; the first also cuts the file
    /// to the line's length, in case it was longer).
    pub fn publish(&self, mark: Watermark) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        self.file.write_all_at(&mark.encode(), 0)?;
        if !self.sized.load(Ordering::Relaxed) {
            self.file.set_len(WATERMARK_BYTES as u64)?;
            self.sized.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// How often a [`WatermarkReader`] checks that its file is still the one at its
/// path (the writer rewrites it in place; a replaced file is opened anew).
pub const REOPEN_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// A reader's handle on the watermark file: opened once it exists and then kept
/// (as the log itself is), so that reading it, every time the log grows, is one
/// `pread` and not an open, a read and a close, each of which notifies every
/// watcher of the directory. Once every [`REOPEN_CHECK_INTERVAL`] it checks that
/// the path still names the file it holds, and opens it anew if not.
#[derive(Debug)]
pub struct WatermarkReader {
    path: PathBuf,
    file: Option<File>,
    /// The inode of `file`.
    inode: u64,
    /// When the path was last checked against `inode`.
    checked: std::time::Instant,
    /// Whether a file was opened since [`WatermarkReader::take_opened`] last said so.
    opened: bool,
}

impl WatermarkReader {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        WatermarkReader {
            path: path.into(),
            file: None,
            inode: 0,
            checked: std::time::Instant::now(),
            opened: false,
        }
    }

    /// The watermark now: `Ok(None)` if the file does not exist yet or is
    /// mid-rewrite (anything but exactly one valid line).
    pub fn read(&mut self) -> io::Result<Option<Watermark>> {
        use std::os::unix::fs::MetadataExt;
        if self.file.is_some() && self.checked.elapsed() >= REOPEN_CHECK_INTERVAL {
            self.checked = std::time::Instant::now();
            let same = std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode);
            if !same {
                self.file = None;
            }
        }
        if self.file.is_none() {
            let file = match File::open(&self.path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            self.inode = file.metadata()?.ino();
            self.checked = std::time::Instant::now();
            self.file = Some(file);
            self.opened = true;
        }
        let file = self.file.as_ref().expect("opened above");
        // One byte more than a line: a longer file is no watermark.
        let mut buf = [0u8; WATERMARK_BYTES + 1];
        let mut len = 0;
        while len < buf.len() {
            match file.read_at(&mut buf[len..], len as u64) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Watermark::decode(&buf[..len]))
    }

    /// Whether a file was opened (the first, or a replacement) since the last call:
    /// a change notification watching the file held before is stale.
    pub fn take_opened(&mut self) -> bool {
        std::mem::take(&mut self.opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_the_format_says() {
        let mark = Watermark {
            seq: 42,
            offset: 123_456,
            ts_us: u64::MAX,
        };
        let text = format!("{:020} {:020} {:020} ", mark.seq, mark.offset, mark.ts_us);
        let crc = crc32c::crc32c(&text.as_bytes()[..COVERED_BYTES]);
        assert_eq!(
            mark.encode().as_slice(),
            format!("{text}{crc:08x}\n").as_bytes()
        );
    }

    #[test]
    fn round_trip_and_damage() {
        let mark = Watermark {
            seq: 42,
            offset: 123_456,
            ts_us: 1_795_000_000_000_000,
        };
        let bytes = mark.encode();
        assert_eq!(Watermark::decode(&bytes), Some(mark));
        for i in 0..bytes.len() {
            let mut bad = bytes;
            bad[i] ^= 0x04;
            assert_eq!(Watermark::decode(&bad), None, "byte {i}");
        }
        assert_eq!(Watermark::decode(&bytes[..30]), None);
    }

    #[test]
    fn file_round_trip() {
        let dir = std::env::temp_dir().join(format!("wm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = path_for(&dir.join("log.txt"));
        assert!(path.ends_with("log.txt.durable"));
        assert_eq!(
            WatermarkReader::new(&path).read().unwrap(),
            None,
            "no file yet"
        );
        let file = WatermarkFile::create(&path).unwrap();
        file.publish(Watermark {
            seq: 10_000,
            offset: 99,
            ts_us: 3,
        })
        .unwrap();
        let mark = Watermark {
            seq: 7,
            offset: 5,
            ts_us: 2,
        };
        let mut reader = WatermarkReader::new(&path);
        file.publish(mark).unwrap();
        assert_eq!(WatermarkReader::new(&path).read().unwrap(), Some(mark));
        assert_eq!(reader.read().unwrap(), Some(mark));
        let later = Watermark {
            seq: 8,
            offset: 6,
            ts_us: 4,
        };
        file.try_clone().unwrap().publish(later).unwrap();
        assert_eq!(
            reader.read().unwrap(),
            Some(later),
            "the kept handle sees rewrites"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
