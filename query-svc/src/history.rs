//! Reading the past from the log: the book as it was right after event N (time
//! travel), and the events from seq N on (the history part of `/events`). Both start
//! from the nearest known position at or before N (a snapshot, or the seek index the
//! tailer keeps) and read forward, so their cost follows the distance, and memory
//! stays bounded by the state (time travel) or by one read chunk (events).
//!
//! A position is a [`LogCursor`]: a byte offset and the seq of the line there. A
//! file is read at the offset; a JetStream stream from the seq ([`OpenLog`] opens
//! either, and [`LogRead::locate`] says where to start).

use crate::checkpoint;
use crate::projection::{BookView, ReadModel};
use bytes::Bytes;
use shared_events::source::{FileLog, Reader, read_full_at};
use shared_events::{BookState, Envelope, LogCursor, LogRead, SCHEMA_VERSION};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// Bytes read from the log per history step of an event stream (one line fits).
pub const HISTORY_CHUNK_BYTES: usize = shared_events::codec::LINE_BYTES_MAX;
/// Events between two entries of the seek index.
pub const SEEK_INDEX_EVERY: u64 = 1024;

/// Opens a reader of the log for each reader of the past.
pub trait OpenLog: Send + Sync + std::fmt::Debug {
    fn open(&self) -> Box<dyn LogRead + Send>;
}

/// A log file.
impl OpenLog for PathBuf {
    fn open(&self) -> Box<dyn LogRead + Send> {
        Box::new(FileLog::new(self))
    }
}

/// Where the past can be read from.
#[derive(Debug)]
pub struct Archive {
    pub genesis: BookState,
    /// The markets the read side holds (see `ReadModel::held`).
    pub held: Arc<[bool]>,
    pub log: Box<dyn OpenLog>,
    pub snapshots: PathBuf,
}

/// Known (seq, offset) positions in the log, every [`SEEK_INDEX_EVERY`] events, so a
/// reader of old events does not have to start at byte 0.
#[derive(Debug, Default)]
pub struct SeekIndex {
    /// Cursors by increasing `next_seq`.
    points: RwLock<Vec<LogCursor>>,
    /// The `next_seq` from which the next point is due: lets [`SeekIndex::note`]
    /// skip the lock for all the events in between.
    due: std::sync::atomic::AtomicU64,
}

impl SeekIndex {
    pub fn new(start: LogCursor) -> Self {
        let mut points = vec![LogCursor::start()];
        if start.next_seq > 1 {
            points.push(start);
        }
        let due = points.last().map_or(0, |c| c.next_seq) + SEEK_INDEX_EVERY;
        SeekIndex {
            points: RwLock::new(points),
            due: due.into(),
        }
    }

    /// Records `cursor` if it is the spacing past the last point.
    pub fn note(&self, cursor: LogCursor) {
        use std::sync::atomic::Ordering;
        if cursor.next_seq < self.due.load(Ordering::Relaxed) {
            return;
        }
        self.points.write().expect("seek index lock").push(cursor);
        self.due
            .store(cursor.next_seq + SEEK_INDEX_EVERY, Ordering::Relaxed);
    }

    /// The furthest known position at or before `seq`.
    pub fn before(&self, seq: u64) -> LogCursor {
        let points = self.points.read().expect("seek index lock");
        let i = points.partition_point(|c| c.next_seq <= seq);
        points[i.saturating_sub(1)]
    }
}

/// The book right after event `n` (`n` = 0: the genesis state), rebuilt from the
/// newest snapshot at or before `n` and the log after it.
pub fn book_at(archive: &Archive, n: u64) -> Result<BookView, String> {
    let mut log = archive.log.open();
    let loaded = checkpoint::load_until(
        &archive.snapshots,
        &mut *log,
        n,
        &archive.genesis.markets,
        &archive.held,
    );
    let (mut model, cursor) = loaded
        .map(|(model, cursor, _)| (model, cursor))
        .unwrap_or_else(|| {
            let held = Some(archive.held.clone());
            let model = ReadModel::from_state_holding(&archive.genesis, 0, held);
            (model, LogCursor::start())
        });
    if model.seq < n {
        log.locate(cursor);
        let mut misfit = None;
        shared_events::scan_until(Reader::new(&mut log, cursor.offset), cursor, n, |env, _| {
            if misfit.is_none()
                && let Err(e) = model.apply(&env)
            {
                misfit = Some(e.to_string());
            }
        })
        .map_err(|e| e.to_string())?;
        if let Some(e) = misfit {
            return Err(e);
        }
    }
    if model.seq != n {
        return Err(format!("the log ends at seq {} before seq {n}", model.seq));
    }
    Ok(model.book_view())
}

/// One event as the event stream sends it.
#[derive(Debug, Clone)]
pub struct LineEvent {
    pub seq: u64,
    /// `OrderPlaced` or `OrderCancelled`.
    pub kind: &'static str,
    /// The market it happened in (for `/events?market=S`); `None` for a transfer.
    pub market: Option<shared_events::Symbol>,
    /// The log line without its newline: the envelope as JSON. A line of an older
    /// schema version is streamed as the current one says it means (see
    /// [`LineEvent::new`]).
    pub line: Bytes,
}

impl LineEvent {
    /// The event of `env`, read from the log `line` (without its newline). A line of
    /// the current schema version is streamed byte for byte; an older one as its
    /// upcast envelope in the current version, with `"v"` the current version and
    /// `"written_v"` the version the line was written with (and no `crc`: the
    /// checksum covers the bytes as written, which are in the log).
    pub fn new(env: &Envelope, line: &[u8]) -> LineEvent {
        let line = if env.v == SCHEMA_VERSION {
            Bytes::copy_from_slice(line)
        } else {
            #[derive(serde::Serialize)]
            struct Upcast<'a> {
                seq: u64,
                ts_us: u64,
                v: u32,
                written_v: u32,
                event: &'a shared_events::Event,
            }
            let upcast = Upcast {
                seq: env.seq,
                ts_us: env.ts_us,
                v: SCHEMA_VERSION,
                written_v: env.v,
                event: &env.event,
            };
            serde_json::to_vec(&upcast)
                .expect("serializing an event to memory cannot fail")
                .into()
        };
        LineEvent {
            seq: env.seq,
            kind: env.event.kind(),
            market: env.event.market(),
            line,
        }
    }

    /// The event of a line of the current schema version known only by its checked
    /// head (a market this side does not fold): streamed byte for byte.
    pub fn of_head(head: &shared_events::LineHead, line: &[u8]) -> LineEvent {
        LineEvent {
            seq: head.seq,
            kind: head.kind,
            market: Some(head.market),
            line: Bytes::copy_from_slice(line),
        }
    }
}

/// Reads one chunk of `log` from `cursor` and returns its events with seq in
/// `first..=last`, the cursor after the chunk's complete lines, and whether the
/// reading is done (`last` passed, or the end of the log reached).
pub fn read_events(
    log: &mut dyn LogRead,
    cursor: LogCursor,
    first: u64,
    last: u64,
) -> Result<(Vec<LineEvent>, LogCursor, bool), String> {
    log.locate(cursor);
    let mut buf = vec![0u8; HISTORY_CHUNK_BYTES];
    let got =
        read_full_at(log, cursor.offset, &mut buf).map_err(|e| format!("reading the log: {e}"))?;
    buf.truncate(got);
    let mut out = Vec::new();
    let mut next = cursor;
    let decoded = next.decode_lines(&buf, |env, raw| {
        if (first..=last).contains(&env.seq) {
            out.push(LineEvent::new(&env, &raw[..raw.len() - 1]));
        }
    });
    let done = next.next_seq > last;
    match decoded {
        Ok(used) => Ok((out, next, done || used == 0)),
        // Past `last` lie only events not yet durable: a bad line there is not ours to judge.
        Err(bad) if bad.expected_seq > last => Ok((out, next, true)),
        Err(bad) => Err(format!("bad line in the log: {bad}")),
    }
}
