//! Checkpoints: the state of one side at seq N, so a start replays only the log
//! after N. Each side (`kind`: `command`, `query`) stores its own body; this module
//! holds the file format and the atomic write / newest-valid load that both share.
//!
//! A snapshot file `<kind>-<seq, 20 digits>.snap` is a header line (JSON
//! [`SnapshotHeader`]) and the body bytes. The header carries the event schema
//! version, the side's fold version, the seq and log offset it was taken at, and the
//! body's length and CRC-32C. A file that fails any check, or was written by another
//! fold version, is skipped (and said so): start falls back to an older snapshot or
//! to genesis, replaying more of the log. Events are never thrown away, so a
//! snapshot is only ever a shortcut.
//!
//! Writing is atomic: temp file, `fsync`, `rename`, `fsync` of the directory. The
//! newest [`SNAPSHOTS_KEPT`] of each kind are kept.

use crate::source::LogRead;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Snapshots kept per kind; older ones are removed after a successful write.
pub const SNAPSHOTS_KEPT: usize = 2;

/// Default number of events between two snapshots.
pub const SNAPSHOT_EVERY_DEFAULT: u64 = 100_000;

/// Where and how often a side writes snapshots.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    pub dir: PathBuf,
    /// Events between two snapshots (0: only at a clean stop).
    pub every: u64,
}

/// Schedules one side's snapshots: every `every` events, on a background thread so
/// the side goes on folding, at most one at a time (a due snapshot waits while the
/// previous one is still being written), and a final one at a clean stop.
#[derive(Debug)]
pub struct Checkpointer {
    options: SnapshotOptions,
    /// Seq of the last snapshot written (or started from).
    last_seq: u64,
    in_flight: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub fn new(options: SnapshotOptions, start_seq: u64) -> Self {
        Checkpointer {
            options,
            last_seq: start_seq,
            in_flight: None,
        }
    }

    /// After a batch that reached `seq`: if a snapshot is due and none is being
    /// written, `take` copies the state (on the caller's thread) and returns the job
    /// that writes it into the directory (on another thread).
    pub fn maybe<J: FnOnce(&Path) + Send + 'static>(&mut self, seq: u64, take: impl FnOnce() -> J) {
        let every = self.options.every;
        if every == 0 || seq.saturating_sub(self.last_seq) < every {
            return;
        }
        if self.in_flight.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let (job, dir) = (take(), self.options.dir.clone());
        self.last_seq = seq;
        self.in_flight = Some(std::thread::spawn(move || job(&dir)));
    }

    /// At a clean stop at `seq`: waits for a running write, then writes the final
    /// state if it moved since the last snapshot.
    pub fn finish<J: FnOnce(&Path)>(&mut self, seq: u64, take: impl FnOnce() -> J) {
        if let Some(t) = self.in_flight.take() {
            let _ = t.join();
        }
        if seq > self.last_seq {
            take()(&self.options.dir);
            self.last_seq = seq;
        }
    }
}

/// The first line of a snapshot file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// Which side wrote it (`command` or `query`).
    pub kind: String,
    /// Event schema version of the log it was folded from.
    pub schema_version: u32,
    /// Version of the side's fold; another version means another state shape.
    pub fold_version: u32,
    /// The last event folded into it.
    pub seq: u64,
    /// Log length in bytes after event `seq`: where replay continues.
    pub log_offset: u64,
    pub body_bytes: u64,
    /// CRC-32C of the body, 8 lowercase hex digits.
    pub body_crc: String,
}

/// The default snapshot directory: `snapshots/` beside the log.
pub fn default_dir(log: &Path) -> PathBuf {
    log.with_file_name("snapshots")
}

fn file_name(kind: &str, seq: u64) -> String {
    format!("{kind}-{seq:020}.snap")
}

/// Writes a snapshot atomically and prunes old ones of the same kind. Returns its path.
pub fn write(
    dir: &Path,
    kind: &str,
    fold_version: u32,
    seq: u64,
    log_offset: u64,
    body: &[u8],
) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let header = SnapshotHeader {
        kind: kind.to_owned(),
        schema_version: crate::SCHEMA_VERSION,
        fold_version,
        seq,
        log_offset,
        body_bytes: body.len() as u64,
        body_crc: format!("{:08x}", crc32c::crc32c(body)),
    };
    let final_path = dir.join(file_name(kind, seq));
    let tmp_path = dir.join(format!(".{}.tmp", file_name(kind, seq)));
    {
        let mut tmp = File::create(&tmp_path)?;
        serde_json::to_writer(&mut tmp, &header)?;
        tmp.write_all(b"\n")?;
        tmp.write_all(body)?;
        tmp.sync_all()?;
    }
    fs::rename(&tmp_path, &final_path)?;
    File::open(dir)?.sync_all()?;
    for old in list(dir, kind)?.into_iter().skip(SNAPSHOTS_KEPT) {
        let _ = fs::remove_file(old.1);
    }
    Ok(final_path)
}

/// Snapshot files of `kind` in `dir`, newest first, as (seq, path).
fn list(dir: &Path, kind: &str) -> io::Result<Vec<(u64, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let prefix = format!("{kind}-");
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(seq) = name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".snap"))
        else {
            continue;
        };
        if let Ok(seq) = seq.parse::<u64>() {
            found.push((seq, entry.path()));
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    Ok(found)
}

/// Reads and checks one snapshot file; the error says why it is not usable.
/// Returns the header, the file's bytes and where the body starts in them (the
/// body is not copied out: it may be tens of megabytes).
#[expect(
    unsafe_code,
    reason = "maps the snapshot file; see the SAFETY comment at the map"
)]
pub fn read(
    path: &Path,
    kind: &str,
    fold_version: u32,
) -> Result<(SnapshotHeader, memmap2::Mmap, usize), String> {
    let file = fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    // Mapped rather than copied: a million orders are tens of MB, and mapping the
    // page cache's pages (all at once: `populate`) is cheaper than faulting in a
    // fresh buffer and copying into it.
    // SAFETY: the mapping is only read, and only while the snapshot is loaded. A
    // snapshot file is never changed in place: it is written under a temporary
    // name, synced and renamed, and old ones are deleted (deleting a mapped file
    // keeps its pages). Truncating one by hand during a start is the one way to
    // break this (the start then dies of SIGBUS); docs/durability.md says to delete,
    // not edit, snapshots.
    let bytes = unsafe { memmap2::MmapOptions::new().populate().map(&file) }
        .map_err(|e| format!("cannot read: {e}"))?;
    let nl = memchr::memchr(b'\n', &bytes).ok_or("no header line")?;
    let header: SnapshotHeader =
        serde_json::from_slice(&bytes[..nl]).map_err(|e| format!("bad header: {e}"))?;
    let body = &bytes[nl + 1..];
    if header.kind != kind {
        return Err(format!("kind {:?}, expected {kind:?}", header.kind));
    }
    if header.schema_version != crate::SCHEMA_VERSION {
        return Err(format!(
            "event schema version {} (this build: {})",
            header.schema_version,
            crate::SCHEMA_VERSION
        ));
    }
    if header.fold_version != fold_version {
        return Err(format!(
            "fold version {} (this build: {fold_version})",
            header.fold_version
        ));
    }
    if header.body_bytes != body.len() as u64 {
        return Err(format!(
            "body is {} bytes, header says {}",
            body.len(),
            header.body_bytes
        ));
    }
    let crc = format!("{:08x}", crc32c::crc32c(body));
    if header.body_crc != crc {
        return Err(format!(
            "body checksum {crc}, header says {}",
            header.body_crc
        ));
    }
    Ok((header, bytes, nl + 1))
}

/// What [`load_newest`] found.
#[derive(Debug)]
pub struct Loaded<T> {
    pub header: SnapshotHeader,
    pub path: PathBuf,
    pub state: T,
}

/// The newest snapshot of `kind` that passes every check and that `accept` (which
/// decodes the body and checks it against the log) takes. Every skipped file is
/// reported through `skipped(path, reason)`.
pub fn load_newest<T>(
    dir: &Path,
    kind: &str,
    fold_version: u32,
    accept: impl FnMut(&SnapshotHeader, &[u8]) -> Result<T, String>,
    skipped: impl FnMut(&Path, &str),
) -> io::Result<Option<Loaded<T>>> {
    load_newest_until(dir, kind, fold_version, u64::MAX, accept, skipped)
}

/// [`load_newest`] among the snapshots taken at or before `seq_max`.
pub fn load_newest_until<T>(
    dir: &Path,
    kind: &str,
    fold_version: u32,
    seq_max: u64,
    mut accept: impl FnMut(&SnapshotHeader, &[u8]) -> Result<T, String>,
    mut skipped: impl FnMut(&Path, &str),
) -> io::Result<Option<Loaded<T>>> {
    for (_, path) in list(dir, kind)?
        .into_iter()
        .filter(|(seq, _)| *seq <= seq_max)
    {
        match read(&path, kind, fold_version)
            .and_then(|(header, bytes, body)| Ok((accept(&header, &bytes[body..])?, header)))
        {
            Ok((state, header)) => {
                return Ok(Some(Loaded {
                    header,
                    path,
                    state,
                }));
            }
            Err(reason) => skipped(&path, &reason),
        }
    }
    Ok(None)
}

/// Checks that `log` continues a snapshot taken at (`seq`, `offset`): the log is at
/// least that long, the byte before `offset` ends a line, and the line at `offset`,
/// if complete, carries `seq + 1`. A log that was replaced or truncated behind the
/// snapshot's back fails, and the snapshot is not used.
pub fn check_log_continues(
    log: &mut (impl LogRead + ?Sized),
    seq: u64,
    offset: u64,
) -> Result<(), String> {
    let len = match log.length() {
        Ok(Some(len)) => len,
        Ok(None) if offset == 0 => return Ok(()),
        Ok(None) => return Err("cannot open the log: it does not exist".to_owned()),
        Err(e) => return Err(format!("cannot open the log: {e}")),
    };
    if len < offset {
        return Err(format!(
            "the log is {len} bytes, shorter than the snapshot's offset {offset}"
        ));
    }
    if offset == 0 {
        return Ok(());
    }
    let mut buf =
        vec![0u8; (len - offset + 1).min(crate::codec::LINE_BYTES_MAX as u64 + 1) as usize];
    let got = crate::source::read_full_at(log, offset - 1, &mut buf).map_err(|e| e.to_string())?;
    if got < buf.len() {
        return Err(format!(
            "the log ended while reading byte {}",
            offset - 1 + got as u64
        ));
    }
    if buf[0] != b'\n' {
        return Err(format!("byte {offset} of the log does not start a line"));
    }
    if let Some(nl) = memchr::memchr(b'\n', &buf[1..]) {
        let env = crate::decode_line(&buf[1..1 + nl])
            .map_err(|e| format!("the line after the snapshot: {e}"))?;
        if env.seq != seq + 1 {
            return Err(format!(
                "the line after the snapshot has seq {}, expected {}",
                env.seq,
                seq + 1
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // One scenario, read top to bottom: its steps build on each other's state,
    // so it stays one function.
    fn write_load_prune_and_skip_bad_ones() {
        let dir = std::env::temp_dir().join(format!(
            "snap-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        for seq in [10, 20, 30] {
            write(
                &dir,
                "command",
                1,
                seq,
                seq * 100,
                format!("body {seq}").as_bytes(),
            )
            .unwrap();
        }
        write(&dir, "query", 1, 40, 4000, b"query body").unwrap();
        let names: Vec<_> = list(&dir, "command")
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(names, vec![30, 20], "the newest two are kept");

        let mut skipped = Vec::new();
        let ok = |_: &SnapshotHeader, body: &[u8]| Ok(String::from_utf8(body.to_vec()).unwrap());
        let loaded = load_newest(&dir, "command", 1, ok, |p, r| {
            skipped.push((p.to_owned(), r.to_owned()))
        })
        .unwrap()
        .unwrap();
        assert_eq!((loaded.header.seq, loaded.state.as_str()), (30, "body 30"));

        // Damage the newest: the older one is used and the damage reported.
        let newest = dir.join(file_name("command", 30));
        let mut bytes = fs::read(&newest).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&newest, bytes).unwrap();
        let loaded = load_newest(&dir, "command", 1, ok, |p, r| {
            skipped.push((p.to_owned(), r.to_owned()))
        })
        .unwrap()
        .unwrap();
        assert_eq!(loaded.header.seq, 20);
        assert!(skipped[0].1.contains("checksum"), "{skipped:?}");

        // Cut short, or to nothing (a mapped empty file): refused with a reason.
        let full = fs::read(dir.join(file_name("command", 20))).unwrap();
        for (len, reason) in [
            (full.len() - 1, "body is"),
            (10, "no header line"),
            (0, "no header line"),
        ] {
            fs::write(&newest, &full[..len]).unwrap();
            assert!(
                read(&newest, "command", 1).unwrap_err().contains(reason),
                "{len}"
            );
        }
        fs::write(&newest, &full).unwrap();

        // Another fold version: nothing usable.
        skipped.clear();
        assert!(
            load_newest(&dir, "command", 2, ok, |p, r| skipped
                .push((p.to_owned(), r.to_owned())))
            .unwrap()
            .is_none()
        );
        assert_eq!(skipped.len(), 2);
        assert!(
            skipped.iter().all(|(_, r)| r.contains("fold version 1")),
            "{skipped:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
