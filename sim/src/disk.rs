//! The simulated disk: the log file, its page cache and its watermark side file, in
//! memory, driven by the seed. It keeps two copies of the log, LazyFS-style: what
//! reads see (`current`, the page cache) and what survives a power cut (`durable`,
//! updated only by a successful sync). Faults are armed by the driver for one commit
//! and fire inside the real writer's calls: a failed write (nothing written), a write
//! torn at any byte (a prefix written, then an error), a failed sync (written, not
//! durable), a failed watermark publish. A power cut keeps what was synced plus,
//! chosen by the seed, nothing, a prefix, a prefix and garbage (without a newline),
//! or a prefix of whole lines whose last line has a run of zeros (a bad last line)
//! of the unsynced bytes, and may lose the watermark file (it is never synced). Change notifications
//! to the tailer are delayed or dropped.
//!
//! The writer's side ([`WriterDisk`]: `Storage`, `Recoverable`) and the reader's side
//! ([`ReaderDisk`]: `LogSource`) are two handles on one disk, as two processes would
//! have two file descriptors on one file.

use super::rng::Rng;
use command_svc::storage::{Recoverable, Storage};
use query_svc::source::LogSource;
use shared_events::{LogRead, Watermark};
use std::io;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};

/// Chance, in percent, that a change notification is lost.
pub const NOTIFY_DROP_PERCENT: u64 = 20;
/// Longest delay of a change notification, in simulation steps.
pub const NOTIFY_DELAY_STEPS_MAX: u64 = 6;
/// Chance, in percent, that a read of the watermark file catches it mid-rewrite.
pub const WATERMARK_TORN_READ_PERCENT: u64 = 3;
/// Chance, in percent, that a power cut loses the (never synced) watermark file.
pub const WATERMARK_LOST_PERCENT: u64 = 30;
/// Most garbage bytes a power cut leaves after the unsynced bytes it kept.
pub const POWER_CUT_GARBAGE_BYTES_MAX: u64 = 64;

/// A fault armed for the next commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The write fails; nothing reaches the file.
    FailWrite,
    /// The write stops at a byte chosen by the seed, then fails.
    TearWrite,
    /// The write succeeds, the sync fails: the bytes sit in the page cache only.
    FailSync,
    /// Rewriting the watermark file fails.
    FailPublish,
}

/// What happened to the unsynced bytes at a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerCut {
    /// Lost, all of them.
    LostAll,
    /// The first `kept` of them had reached the platter.
    KeptPrefix { kept: usize },
    /// The first `kept`, then `garbage` bytes of rubbish, none a newline (a size
    /// extended before its data was written).
    Garbage { kept: usize, garbage: usize },
    /// The first `kept`, ending with a whole line, except that `zeroed` bytes of
    /// that last line, from `at`, never reached the platter (a bad last line).
    Scribbled {
        kept: usize,
        at: usize,
        zeroed: usize,
    },
}

#[derive(Debug)]
struct DiskState {
    /// The log as reads see it: the page cache.
    current: Vec<u8>,
    /// The log as a power cut leaves it: what was synced.
    durable: Vec<u8>,
    /// The watermark side file.
    watermark: Option<Watermark>,
    /// The fault that fires in the next storage call it applies to.
    fault: Option<Fault>,
    /// Steps at which pending change notifications reach the tailer.
    notifications: Vec<u64>,
    /// The driver's current step, for notification delays.
    step: u64,
    rng: Rng,
}

/// One simulated disk; clones share it.
#[derive(Debug, Clone)]
pub struct Disk {
    inner: Arc<Mutex<DiskState>>,
}

impl Disk {
    pub fn new(seed: u64) -> Self {
        Disk {
            inner: Arc::new(Mutex::new(DiskState {
                current: Vec::new(),
                durable: Vec::new(),
                watermark: None,
                fault: None,
                notifications: Vec::new(),
                step: 0,
                rng: Rng::new(seed),
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, DiskState> {
        // The simulation is single-threaded; a poisoned lock means a panic already.
        self.inner.lock().expect("sim disk lock")
    }

    /// The writer's handle.
    pub fn writer(&self) -> WriterDisk {
        WriterDisk(self.clone())
    }

    /// The reader's handle.
    pub fn reader(&self) -> ReaderDisk {
        ReaderDisk(self.clone())
    }

    pub fn arm(&self, fault: Fault) {
        self.state().fault = Some(fault);
    }

    /// Disarms a fault that did not fire; true if one was armed.
    pub fn disarm(&self) -> bool {
        self.state().fault.take().is_some()
    }

    pub fn set_step(&self, step: u64) {
        self.state().step = step;
    }

    /// Whether a change notification is due by now (all due ones are consumed:
    /// notifications coalesce, as inotify's do).
    pub fn take_due_notification(&self) -> bool {
        let mut s = self.state();
        let step = s.step;
        let before = s.notifications.len();
        s.notifications.retain(|&due| due > step);
        s.notifications.len() != before
    }

    /// A copy of what reads see.
    pub fn current(&self) -> Vec<u8> {
        self.state().current.clone()
    }

    /// A copy of what a power cut would leave.
    pub fn durable(&self) -> Vec<u8> {
        self.state().durable.clone()
    }

    /// Whether the platter's log starts with `prefix`; else where they first differ.
    pub fn durable_starts_with(&self, prefix: &[u8]) -> Result<(), usize> {
        let s = self.state();
        if s.durable.starts_with(prefix) {
            return Ok(());
        }
        match s.durable.iter().zip(prefix).position(|(a, b)| a != b) {
            Some(at) => Err(at),
            None if s.durable.len() < prefix.len() => Err(s.durable.len()),
            None => Ok(()),
        }
    }

    /// Whether everything reads see is synced.
    pub fn all_synced(&self) -> bool {
        let s = self.state();
        s.durable == s.current
    }

    pub fn current_len(&self) -> u64 {
        self.state().current.len() as u64
    }

    pub fn durable_len(&self) -> u64 {
        self.state().durable.len() as u64
    }

    pub fn watermark(&self) -> Option<Watermark> {
        self.state().watermark
    }

    /// Flips bits of byte `at` (in the page cache and on the platter: the medium
    /// itself went bad). Returns the old byte, for [`Disk::restore`].
    pub fn corrupt(&self, at: usize, xor: u8) -> u8 {
        let mut s = self.state();
        let old = s.current[at];
        s.current[at] ^= xor;
        if at < s.durable.len() {
            s.durable[at] ^= xor;
        }
        old
    }

    /// Puts byte `at` back (the log restored from a copy).
    pub fn restore(&self, at: usize, byte: u8) {
        let mut s = self.state();
        s.current[at] = byte;
        if at < s.durable.len() {
            s.durable[at] = byte;
        }
    }

    /// The machine loses power: the page cache is gone, the file is what the
    /// platter had. Returns what happened to the unsynced bytes.
    ///
    /// One function: each outcome is one arm of a single seeded choice.
    pub fn power_cut(&self) -> PowerCut {
        let mut s = self.state();
        let s = &mut *s;
        let durable_len = s.durable.len();
        let appended = s.current.len() > durable_len && s.current.starts_with(&s.durable);
        let unsynced = if appended {
            s.current.len() - durable_len
        } else {
            0
        };
        // Complete unsynced lines: (start, end) relative to the durable end.
        let whole_lines: Vec<(usize, usize)> = {
            let tail = &s.current[durable_len..durable_len + unsynced];
            let mut out = Vec::new();
            let mut start = 0;
            for (i, _) in tail.iter().enumerate().filter(|(_, b)| **b == b'\n') {
                out.push((start, i + 1));
                start = i + 1;
            }
            out
        };
        let cut = match s.rng.below(12) {
            _ if unsynced == 0 => PowerCut::LostAll,
            0..=4 => PowerCut::LostAll,
            5..=7 => PowerCut::KeptPrefix {
                kept: s.rng.below(unsynced as u64 + 1) as usize,
            },
            8 | 9 => PowerCut::Garbage {
                kept: s.rng.below(unsynced as u64 + 1) as usize,
                garbage: s.rng.range(1, POWER_CUT_GARBAGE_BYTES_MAX) as usize,
            },
            _ if whole_lines.is_empty() => PowerCut::LostAll,
            _ => {
                let (start, end) = *s.rng.pick(&whole_lines);
                let at = s.rng.range(start as u64, end as u64 - 2) as usize;
                let zeroed = s.rng.range(1, (end - 1 - at) as u64) as usize;
                PowerCut::Scribbled {
                    kept: end,
                    at,
                    zeroed,
                }
            }
        };
        let mut survived = s.durable.clone();
        match cut {
            PowerCut::LostAll => {}
            PowerCut::KeptPrefix { kept } => {
                survived.extend_from_slice(&s.current[durable_len..durable_len + kept]);
            }
            PowerCut::Garbage { kept, garbage } => {
                survived.extend_from_slice(&s.current[durable_len..durable_len + kept]);
                // Zeros (an extent allocated, never written) or stale bytes. Never a
                // newline: garbage that looks like several lines is corruption by the
                // log's rules (only a bad last line is a torn write).
                let zeros = s.rng.percent(50);
                for _ in 0..garbage {
                    let byte = if zeros { 0 } else { s.rng.next_u64() as u8 };
                    survived.push(if byte == b'\n' { b' ' } else { byte });
                }
            }
            PowerCut::Scribbled { kept, at, zeroed } => {
                survived.extend_from_slice(&s.current[durable_len..durable_len + kept]);
                survived[durable_len + at..durable_len + at + zeroed].fill(0);
            }
        }
        s.current = survived.clone();
        s.durable = survived;
        if s.rng.percent(WATERMARK_LOST_PERCENT) {
            s.watermark = None;
        }
        s.notifications.clear();
        s.fault = None;
        cut
    }
}

/// The writer's file descriptor on the disk.
#[derive(Debug)]
pub struct WriterDisk(Disk);

impl Storage for WriterDisk {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.0.state();
        match s.fault {
            Some(Fault::FailWrite) => {
                s.fault = None;
                Err(io::Error::other("simulated write failure"))
            }
            Some(Fault::TearWrite) => {
                s.fault = None;
                let kept = s.rng.below(bytes.len() as u64) as usize;
                s.current.extend_from_slice(&bytes[..kept]);
                Err(io::Error::other(format!(
                    "simulated torn write: {kept} of {} bytes",
                    bytes.len()
                )))
            }
            _ => {
                s.current.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut s = self.0.state();
        if s.fault == Some(Fault::FailSync) {
            s.fault = None;
            return Err(io::Error::other("simulated fdatasync failure"));
        }
        let s = &mut *s;
        s.durable.clone_from(&s.current);
        Ok(())
    }

    fn publish_durable(&mut self, mark: Watermark) -> io::Result<()> {
        let mut s = self.0.state();
        if s.fault == Some(Fault::FailPublish) {
            s.fault = None;
            return Err(io::Error::other("simulated watermark write failure"));
        }
        s.watermark = Some(mark);
        if !s.rng.percent(NOTIFY_DROP_PERCENT) {
            let due = s.step + s.rng.below(NOTIFY_DELAY_STEPS_MAX + 1);
            s.notifications.push(due);
        }
        Ok(())
    }
}

fn read_at(bytes: &[u8], offset: u64, buf: &mut [u8]) -> usize {
    let start = (offset as usize).min(bytes.len());
    let n = buf.len().min(bytes.len() - start);
    buf[..n].copy_from_slice(&bytes[start..start + n]);
    n
}

impl LogRead for WriterDisk {
    fn length(&mut self) -> io::Result<Option<u64>> {
        Ok(Some(self.0.state().current.len() as u64))
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        Ok(read_at(&self.0.state().current, offset, buf))
    }
}

impl Recoverable for WriterDisk {
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.state().current.truncate(len as usize);
        Ok(())
    }
}

/// The reader's file descriptor on the disk (and on the watermark file).
#[derive(Debug)]
pub struct ReaderDisk(Disk);

impl LogRead for ReaderDisk {
    fn length(&mut self) -> io::Result<Option<u64>> {
        Ok(Some(self.0.state().current.len() as u64))
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        Ok(read_at(&self.0.state().current, offset, buf))
    }
}

impl LogSource for ReaderDisk {
    fn watermark(&mut self) -> io::Result<Option<Watermark>> {
        let mut s = self.0.state();
        if s.rng.percent(WATERMARK_TORN_READ_PERCENT) {
            return Ok(None);
        }
        Ok(s.watermark)
    }

    /// The simulator delivers notifications itself, by stepping the tailer when one
    /// is due ([`Disk::take_due_notification`]); there is no thread to wake.
    fn watch(&mut self, _wake: SyncSender<()>) -> Option<Box<dyn Send>> {
        None
    }

    fn name(&self) -> String {
        "sim-disk".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_synced_bytes_are_sure_to_survive_a_power_cut() {
        for seed in 0..200 {
            let disk = Disk::new(seed);
            let mut w = disk.writer();
            w.append(b"one\ntwo\n").unwrap();
            w.sync().unwrap();
            w.append(b"three\nfour\n").unwrap();
            assert_eq!(disk.current(), b"one\ntwo\nthree\nfour\n");
            assert_eq!(disk.durable(), b"one\ntwo\n");
            let cut = disk.power_cut();
            let after = disk.current();
            assert!(after.starts_with(b"one\ntwo\n"), "{cut:?}");
            assert_eq!(
                disk.durable(),
                after,
                "after a cut the page cache is the platter"
            );
            let unsynced = &after[8..];
            match cut {
                PowerCut::LostAll => assert!(unsynced.is_empty()),
                PowerCut::KeptPrefix { kept } => assert_eq!(unsynced, &b"three\nfour\n"[..kept]),
                PowerCut::Garbage { kept, garbage } => {
                    assert_eq!(&unsynced[..kept], &b"three\nfour\n"[..kept]);
                    assert_eq!(unsynced.len(), kept + garbage);
                    assert!(!unsynced[kept..].contains(&b'\n'));
                }
                PowerCut::Scribbled { kept, at, zeroed } => {
                    assert_eq!(unsynced.len(), kept);
                    assert!(
                        unsynced.ends_with(b"\n")
                            && unsynced[at..at + zeroed].iter().all(|&b| b == 0)
                    );
                }
            }
        }
    }

    #[test]
    fn armed_faults_fire_once() {
        let disk = Disk::new(1);
        let mut w = disk.writer();
        disk.arm(Fault::FailWrite);
        assert!(w.append(b"lost\n").is_err());
        assert!(disk.current().is_empty());
        disk.arm(Fault::TearWrite);
        assert!(w.append(b"0123456789\n").is_err());
        let torn = disk.current();
        assert!(torn.len() < 11 && b"0123456789\n".starts_with(&torn));
        disk.arm(Fault::FailSync);
        assert!(w.sync().is_err());
        assert!(
            disk.durable().is_empty(),
            "a failed sync makes nothing durable"
        );
        assert!(w.sync().is_ok(), "a fault fires once");
        assert_eq!(disk.durable(), torn);
        disk.arm(Fault::FailPublish);
        assert!(w.publish_durable(Watermark::default()).is_err());
        assert_eq!(disk.watermark(), None);
        assert!(!disk.disarm());
    }
}
