//! The write side's snapshots: the book (resting orders and id counter) at a seq,
//! in the shared snapshot file format. Start loads the newest usable one and replays
//! only the log after it.

use crate::book::Book;
use crate::idempotency::IdempotencyIndex;
use crate::model::WriteModel;
use shared_events::LogCursor;
use shared_events::LogRead;
use shared_events::binary::{BodyReader, BodyWriter};
use shared_events::snapshot::{self, SnapshotHeader};
use shared_events::state::{MarketSpec, symbols};
use std::path::{Path, PathBuf};

/// Snapshot kind of the write side.
pub const KIND: &str = "command";
/// Version of the write side's fold and snapshot body. Bump it whenever `Book::apply`
/// or the body's encoding changes meaning: older snapshots are then ignored and the
/// log is replayed from genesis. 3: the body is binary ([`encode`]), not JSON.
/// 4: the book holds several markets (schema version 2).
/// 5: the book holds the accounts (schema version 3).
pub const FOLD_VERSION: u32 = 5;
pub use shared_events::snapshot::{SNAPSHOT_EVERY_DEFAULT, SnapshotOptions};

/// Most idempotency keys a snapshot body may carry.
const SNAPSHOT_KEYS_MAX: usize = 100_000_000;

/// The write model as a snapshot body ([`shared_events::binary`]): the book
/// ([`Book::encode`]), then the remembered idempotency keys' events, oldest first,
/// each as its log line. Encoding is a sequential copy of the book, done on the
/// writer thread; writing the file happens on another.
pub fn encode(model: &WriteModel) -> Vec<u8> {
    let mut w = BodyWriter::with_capacity(64 + model.book.resting_count() * 24);
    model.book.encode(&mut w);
    w.count(model.keys.len());
    for env in model.keys.events() {
        let line = shared_events::encode(env);
        w.bytes(&line[..line.len() - 1]);
    }
    w.finish()
}

/// The write model of a snapshot body written by [`encode`], every value checked.
pub fn decode(body: &[u8], keys_kept: usize) -> Result<WriteModel, String> {
    let mut r = BodyReader::new(body);
    let book = Book::decode(&mut r).map_err(|e| e.to_string())?;
    let mut keys = IdempotencyIndex::new(keys_kept);
    // A log line is far longer than the 4 bytes of its length.
    for _ in 0..r.count(SNAPSHOT_KEYS_MAX, 4).map_err(|e| e.to_string())? {
        let line = r.bytes().map_err(|e| e.to_string())?;
        let env = shared_events::decode_line(line)
            .map_err(|e| format!("{}: {e}", r.error("idempotency key event")))?;
        keys.record(&env);
    }
    r.end().map_err(|e| e.to_string())?;
    Ok(WriteModel { book, keys })
}

/// A write model at a log position, encoded and ready to be written.
pub struct Checkpoint {
    pub seq: u64,
    pub log_offset: u64,
    pub body: Vec<u8>,
}

impl Checkpoint {
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        snapshot::write(
            dir,
            KIND,
            FOLD_VERSION,
            self.seq,
            self.log_offset,
            &self.body,
        )
    }
}

/// The newest usable snapshot that `log` continues, of a book of exactly
/// `markets` (those of `init.txt`; a snapshot of other markets is ignored): the write
/// model and where replay continues.
pub fn load(
    dir: &Path,
    log: &mut dyn LogRead,
    keys_kept: usize,
    markets: &[MarketSpec],
) -> Option<(WriteModel, LogCursor, PathBuf)> {
    let accept = |header: &SnapshotHeader, body: &[u8]| {
        log.check_continues(header.seq, header.log_offset)?;
        let model = decode(body, keys_kept)?;
        if model.book.markets() != markets {
            return Err(format!(
                "its markets ({}) are not those of the genesis state ({})",
                symbols(model.book.markets()),
                symbols(markets)
            ));
        }
        Ok(model)
    };
    let skipped = |path: &Path, reason: &str| {
        tracing::warn!(path = %path.display(), %reason, "ignoring snapshot: {reason}");
    };
    match snapshot::load_newest(dir, KIND, FOLD_VERSION, accept, skipped) {
        Ok(Some(loaded)) => {
            let h = &loaded.header;
            let cursor = LogCursor {
                offset: h.log_offset,
                lines: h.seq,
                next_seq: h.seq + 1,
            };
            Some((loaded.state, cursor, loaded.path))
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list snapshots; replaying from genesis");
            None
        }
    }
}
