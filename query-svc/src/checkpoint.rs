//! The read side's snapshots: every order and the kept trades at a seq, in the
//! shared snapshot file format. Start loads the newest usable one (unless told to
//! rebuild) and follows the log from there.

use crate::projection::ReadModel;
use shared_events::snapshot::{self, SnapshotHeader};
use shared_events::state::{MarketSpec, symbols};
use shared_events::{LogCursor, LogRead};
use std::path::{Path, PathBuf};

/// Snapshot kind of the read side.
pub const KIND: &str = "query";
/// Version of the read side's fold and snapshot body. Bump it whenever
/// `ReadModel::apply` or its snapshot body ([`ReadModel::encode`]) changes meaning: older snapshots are then
/// ignored and the read model is rebuilt from genesis. 2: the body is binary
/// ([`ReadModel::encode`]), not JSON. 3: several markets (schema version 2).
/// 4: the accounts (schema version 3).
pub const FOLD_VERSION: u32 = 4;
pub use shared_events::snapshot::{SNAPSHOT_EVERY_DEFAULT, SnapshotOptions};

/// Writes `body` ([`ReadModel::encode`]) as the read side's snapshot at (`seq`,
/// `log_offset`), logging the outcome. Runs off the tailer thread, so it also puts
/// the orders in id order here ([`ReadModel::sort_body`]), which makes the body
/// faster to load.
pub fn write(dir: &Path, seq: u64, log_offset: u64, mut body: Vec<u8>) {
    let started = std::time::Instant::now();
    if let Err(e) = ReadModel::sort_body(&mut body) {
        // The body comes from `encode`: this is a bug, and the snapshot is skipped.
        tracing::error!(seq, error = %e, "read side snapshot body is malformed; not written");
        return;
    }
    let written = snapshot::write(dir, KIND, FOLD_VERSION, seq, log_offset, &body);
    match written {
        Ok(path) => tracing::info!(
            seq,
            path = %path.display(),
            ms = started.elapsed().as_millis() as u64,
            "read side snapshot written"
        ),
        // A missing snapshot costs replay time, never data: warn and go on.
        Err(e) => tracing::warn!(seq, error = %e, "read side snapshot failed"),
    }
}

/// The newest usable snapshot that `log` continues, of exactly `markets` (those of
/// `init.txt`) holding exactly the `held` ones (a snapshot of other markets, or
/// holding others, is ignored): the read model and where to follow on.
pub fn load(
    dir: &Path,
    log: &mut dyn LogRead,
    markets: &[MarketSpec],
    held: &[bool],
) -> Option<(ReadModel, LogCursor, PathBuf)> {
    load_until(dir, log, u64::MAX, markets, held)
}

/// [`load`] among the snapshots taken at or before `seq_max`.
pub fn load_until(
    dir: &Path,
    log: &mut dyn LogRead,
    seq_max: u64,
    markets: &[MarketSpec],
    held: &[bool],
) -> Option<(ReadModel, LogCursor, PathBuf)> {
    let accept = |header: &SnapshotHeader, body: &[u8]| {
        log.check_continues(header.seq, header.log_offset)?;
        let model = ReadModel::decode(body, header.seq)?;
        if *model.markets != *markets {
            return Err(format!(
                "its markets ({}) are not those of the genesis state ({})",
                symbols(model.markets.iter()),
                symbols(markets)
            ));
        }
        if *model.held != *held {
            return Err("it holds other markets than this read side (--markets)".into());
        }
        Ok(model)
    };
    let skipped = |path: &Path, reason: &str| {
        tracing::warn!(path = %path.display(), %reason, "ignoring snapshot: {reason}");
    };
    match snapshot::load_newest_until(dir, KIND, FOLD_VERSION, seq_max, accept, skipped) {
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
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list snapshots; rebuilding from genesis");
            None
        }
    }
}
