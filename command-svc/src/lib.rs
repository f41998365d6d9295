//! # command-svc: the write side
//!
//! Validates `/buy`, `/sell` and `/cancel`, decides each against the matching book,
//! and appends the resulting events to the log with group commit. The only way state
//! changes is [`writer::CommandHandle::dispatch`].
//!
//! ## Layout
//!
//! - [`command`]: commands and rejections (with their HTTP status).
//! - [`book`]: the matching book; pure `decide` and `apply`.
//! - [`idempotency`]: the idempotency-key index.
//! - [`model`]: the write model (book + keys) and its fold.
//! - [`checkpoint`]: the write side's snapshots.
//! - [`log_file`]: opening, locking, replaying and appending the file log.
//! - [`writer`]: the single writer thread and its group commit.
//! - [`http`]: warp routes, validation of path and query, JSON errors.
//!
//! [`start`] wires them: read `init.txt`, lock and replay the log, spawn the writer.

pub mod book;
pub mod checkpoint;
pub mod cli;
pub mod command;
pub mod http;
pub mod idempotency;
pub mod log_file;
pub mod model;
pub mod runtime;
pub mod writer;

use book::Book;
use checkpoint::SnapshotOptions;
use idempotency::IdempotencyIndex;
use log_file::{LogFile, OpenError, Recoverable, Recovery};
use model::WriteModel;
use shared_events::{BookState, LogCursor, StateError};
use std::path::{Path, PathBuf};
use std::time::Instant;
pub use writer::{CommandHandle, FsyncMode, WriterOptions, WriterTask};

/// Where the write side finds its files and how it commits.
#[derive(Debug, Clone)]
pub struct Config {
    /// Genesis state.
    pub init: PathBuf,
    /// The event log (created if missing).
    pub log: PathBuf,
    pub fsync: FsyncMode,
    /// Snapshot directory; `None`: `snapshots/` beside the log.
    pub snapshots: Option<PathBuf>,
    /// Events between snapshots (0: only at clean shutdown).
    pub snapshot_every: u64,
    /// Idempotency keys remembered.
    pub idempotency_keys: usize,
}

impl Config {
    /// A config with the defaults for everything but the two files.
    pub fn new(init: impl Into<PathBuf>, log: impl Into<PathBuf>) -> Self {
        Config {
            init: init.into(),
            log: log.into(),
            fsync: FsyncMode::Always,
            snapshots: None,
            snapshot_every: checkpoint::SNAPSHOT_EVERY_DEFAULT,
            idempotency_keys: idempotency::IDEMPOTENCY_KEYS_KEPT_DEFAULT,
        }
    }

    pub fn snapshot_dir(&self) -> PathBuf {
        self.snapshots
            .clone()
            .unwrap_or_else(|| shared_events::snapshot::default_dir(&self.log))
    }
}

/// Why the write side cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Init(#[from] StateError),
    #[error(transparent)]
    Log(#[from] OpenError),
}

/// Loads the newest usable snapshot (else the genesis state), locks the log, replays
/// what follows, and starts the writer.
pub fn start(config: &Config) -> Result<(CommandHandle, WriterTask), StartError> {
    let genesis = BookState::load(&config.init)?;
    let mut log = LogFile::open(&config.log)?;
    let started = Instant::now();
    let snapshot_dir = config.snapshot_dir();
    let name = config.log.display().to_string();
    let (model, recovery) = recover_model(
        &mut log,
        &name,
        &genesis,
        &snapshot_dir,
        config.idempotency_keys,
        log_file::now_us(),
    )?;
    let elapsed = started.elapsed();
    tracing::info!(
        log = %config.log.display(),
        events = recovery.cursor.next_seq - 1,
        replayed = recovery.replayed,
        events_per_s = (recovery.replayed as f64 / elapsed.as_secs_f64().max(1e-9)) as u64,
        resting_orders = model.book.resting_count(),
        start_ms = elapsed.as_millis() as u64,
        "write side replayed the log"
    );
    let options = WriterOptions {
        fsync: config.fsync,
        snapshots: Some(SnapshotOptions {
            dir: snapshot_dir,
            every: config.snapshot_every,
        }),
    };
    Ok(writer::spawn(model, log, recovery.cursor, options))
}

/// Rebuilds the write model from the log in `storage` (called `name` in messages):
/// the newest usable snapshot in `snapshot_dir` (else `genesis`), then the log after
/// it through [`log_file::recover`], which cuts a torn tail, refuses corruption, and
/// publishes the durable watermark stamped `now_us`. The start of every writer, and
/// of every simulated one.
pub fn recover_model<S: Recoverable>(
    storage: &mut S,
    name: &str,
    genesis: &BookState,
    snapshot_dir: &Path,
    keys_kept: usize,
    now_us: u64,
) -> Result<(WriteModel, Recovery), OpenError> {
    let (mut model, from) = match checkpoint::load(snapshot_dir, storage, keys_kept) {
        Some((model, cursor, path)) => {
            tracing::info!(seq = cursor.next_seq - 1, path = %path.display(), "write side starts from a snapshot");
            (model, cursor)
        }
        None => {
            let book = Book::from_state(genesis);
            (
                WriteModel {
                    book,
                    keys: IdempotencyIndex::new(keys_kept),
                },
                LogCursor::start(),
            )
        }
    };
    let recovery = log_file::recover(storage, name, from, now_us, |env| {
        model.apply(env).map_err(|e| e.to_string())
    })?;
    Ok((model, recovery))
}
