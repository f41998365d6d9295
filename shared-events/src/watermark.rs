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
        let text = format!("{:020} {:020} {:020} ", self.seq, self.offset, self.ts_us);
        let crc = crc32c::crc32c(&text.as_bytes()[..COVERED_BYTES]);
        let line = format!("{text}{crc:08x}\n");
        line.as_bytes().try_into().expect("fixed width")
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

    /// Reads the watermark file: `Ok(None)` if it does not exist or is mid-rewrite.
    pub fn read(path: &Path) -> io::Result<Option<Watermark>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Watermark::decode(&bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The writer's handle on the watermark file.
#[derive(Debug)]
pub struct WatermarkFile {
    file: File,
}

impl WatermarkFile {
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(WatermarkFile { file })
    }

    /// Rewrites the watermark in place (one `pwrite`).
    pub fn publish(&self, mark: Watermark) -> io::Result<()> {
        self.file.write_all_at(&mark.encode(), 0)?;
        self.file.set_len(WATERMARK_BYTES as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(Watermark::read(&path).unwrap(), None);
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
        file.publish(mark).unwrap();
        assert_eq!(Watermark::read(&path).unwrap(), Some(mark));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
