//! The write side's snapshots: the book (resting orders and id counter) at a seq,
//! in the shared snapshot file format. Start loads the newest usable one and replays
//! only the log after it.

use crate::book::Book;
use crate::idempotency::IdempotencyIndex;
use crate::model::WriteModel;
use serde::{Deserialize, Serialize};
use shared_events::snapshot::{self, SnapshotHeader};
use shared_events::{BookState, Envelope, LogCursor, LogRead};
use std::path::{Path, PathBuf};

/// Snapshot kind of the write side.
pub const KIND: &str = "command";
/// Version of the write side's fold and snapshot body. Bump it whenever `Book::apply`
/// or [`CommandSnapshot`] changes meaning: older snapshots are then ignored and the
/// log is replayed from genesis.
pub const FOLD_VERSION: u32 = 2;
pub use shared_events::snapshot::{SNAPSHOT_EVERY_DEFAULT, SnapshotOptions};

/// The body of a write-side snapshot.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSnapshot {
    pub book: BookState,
    /// The remembered idempotency keys' events, oldest first.
    pub idempotency: Vec<Envelope>,
}

impl CommandSnapshot {
    pub fn of(model: &WriteModel) -> Self {
        CommandSnapshot {
            book: model.book.to_state(),
            idempotency: model.keys.events().cloned().collect(),
        }
    }

    pub fn into_model(self, keys_kept: usize) -> WriteModel {
        let mut keys = IdempotencyIndex::new(keys_kept);
        for env in &self.idempotency {
            keys.record(env);
        }
        WriteModel {
            book: Book::from_state(&self.book),
            keys,
        }
    }
}

/// A book at a log position, ready to be written.
pub struct Checkpoint {
    pub seq: u64,
    pub log_offset: u64,
    pub body: CommandSnapshot,
}

impl Checkpoint {
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let body = serde_json::to_vec(&self.body)?;
        snapshot::write(dir, KIND, FOLD_VERSION, self.seq, self.log_offset, &body)
    }
}

/// The newest usable snapshot that `log` continues: the write model and where replay continues.
pub fn load(
    dir: &Path,
    log: &mut dyn LogRead,
    keys_kept: usize,
) -> Option<(WriteModel, LogCursor, PathBuf)> {
    let accept = |header: &SnapshotHeader, body: &[u8]| {
        let snap: CommandSnapshot =
            serde_json::from_slice(body).map_err(|e| format!("bad body: {e}"))?;
        snap.book.validate()?;
        snapshot::check_log_continues(&mut *log, header.seq, header.log_offset)?;
        Ok(snap)
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
            Some((loaded.state.into_model(keys_kept), cursor, loaded.path))
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list snapshots; replaying from genesis");
            None
        }
    }
}
