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
//! - [`storage`]: the storage interfaces ([`storage::Storage`],
//!   [`storage::Recoverable`]) and recovery ([`storage::recover`]), for any log.
//! - [`log_file`]: the file log: opening and locking it, appending, syncing.
//! - [`jetstream_admin`]: creating the JetStream stream, or checking an existing one.
//! - [`jetstream_storage`]: the JetStream log as the writer's storage: reading it for
//!   recovery, publishing with dedupe ids and expected-last-sequence fencing.
//! - [`atomic_publish`]: the decisions of that publishing without its I/O (what an
//!   answer means, read back, retry, give up, what landed), shared with the
//!   simulator's stream.
//! - [`writer`]: the single writer thread and its group commit.
//! - [`http`]: warp routes, validation of path and query, JSON errors.
//! - [`cli`]: the write side's command-line flags (also the gateway's).
//! - [`verify`], [`copy_log`]: the offline tools (`command-svc verify`, `copy-log`).
//! - [`describe`]: `# HELP` text of the write side's metrics.
//!
//! The NATS client, its settings and the generic reading of a stream are in
//! `plumbing::jetstream`; the serving of the routes in `plumbing::serve`.
//!
//! [`start`] wires them: read `init.txt`, lock and replay the log (or connect to the
//! stream and replay its tail), spawn the writer.

pub mod accounts;
pub mod atomic_publish;
pub mod book;
pub mod checkpoint;
pub mod cli;
pub mod command;
pub mod copy_log;
pub mod describe;
pub mod http;
pub mod idempotency;
pub mod jetstream_admin;
pub mod jetstream_storage;
pub mod log_file;
pub mod model;
pub mod storage;
pub mod verify;
pub mod writer;

use book::Book;
use checkpoint::SnapshotOptions;
use idempotency::IdempotencyIndex;
use log_file::LogFile;
use model::WriteModel;
use plumbing::jetstream::{JetStream, JetStreamAddress, JetStreamError};
use shared_events::JetStreamUrl;
use shared_events::{BookState, LogCursor, LogLocation, StateError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use storage::{OpenError, Recoverable, Recovery};
pub use writer::{CommandHandle, FsyncMode, WriterOptions, WriterTask};

/// Where the write side finds its files and how it commits.
#[derive(Debug, Clone)]
pub struct Config {
    /// Genesis state.
    pub init: PathBuf,
    /// The event log: a file (created if missing) or a JetStream stream (created if
    /// missing).
    pub log: LogLocation,
    pub fsync: FsyncMode,
    /// Snapshot directory; `None`: `snapshots/` beside a log file,
    /// `snapshots-<stream>/` for a stream.
    pub snapshots: Option<PathBuf>,
    /// Events between snapshots (0: only at clean shutdown).
    pub snapshot_every: u64,
    /// Idempotency keys remembered.
    pub idempotency_keys: usize,
    /// Copies of a JetStream stream the write side creates (1, or 3 across hosts).
    pub nats_replicas: usize,
}

/// Replicas of a stream the write side creates, unless `--nats-replicas` says more.
pub const NATS_REPLICAS_DEFAULT: usize = 1;

impl Config {
    /// A config with the defaults for everything but the genesis file and the log.
    pub fn new(init: impl Into<PathBuf>, log: impl Into<LogLocation>) -> Self {
        Config {
            init: init.into(),
            log: log.into(),
            fsync: FsyncMode::Always,
            snapshots: None,
            snapshot_every: checkpoint::SNAPSHOT_EVERY_DEFAULT,
            idempotency_keys: idempotency::IDEMPOTENCY_KEYS_KEPT_DEFAULT,
            nats_replicas: NATS_REPLICAS_DEFAULT,
        }
    }

    pub fn snapshot_dir(&self) -> PathBuf {
        self.snapshots
            .clone()
            .unwrap_or_else(|| self.log.default_snapshot_dir())
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

/// Loads the newest usable snapshot (else the genesis state), locks the log (or
/// connects to the stream), replays what follows, and starts the writer.
pub fn start(config: &Config) -> Result<(CommandHandle, WriterTask), StartError> {
    start_with(config, None)
}

/// The client for the stream at `url`, named `name` in the servers' connection lists.
pub fn connect(url: &JetStreamUrl, name: &str) -> Result<Arc<JetStream>, JetStreamError> {
    let address = JetStreamAddress {
        servers: url.server_urls(),
        stream: url.stream.clone(),
        subject: url.subject(),
        shown: url.to_string(),
    };
    JetStream::connect(&address, name)
}

/// [`start`], on the JetStream client `js` when the log is a stream and one is given
/// (the combined gateway shares one client between both sides).
pub fn start_with(
    config: &Config,
    js: Option<Arc<JetStream>>,
) -> Result<(CommandHandle, WriterTask), StartError> {
    let genesis = BookState::load(&config.init)?;
    match &config.log {
        LogLocation::File(path) => {
            let log = LogFile::open(path)?;
            let (model, (end, log), options) =
                recover_at_start(config, &genesis, log_name(config), log)?;
            Ok(writer::spawn(model, log, end, options))
        }
        LogLocation::JetStream(url) => {
            let js = match js {
                Some(js) => js,
                None => connect(url, "foldbook command-svc").map_err(OpenError::from)?,
            };
            let (storage, bounds) =
                jetstream_storage::JetStreamStorage::open(js, config.nats_replicas)
                    .map_err(OpenError::from)?;
            tracing::info!(url = %url, events = bounds.last_seq, "the log is a JetStream stream");
            let (model, (end, storage), options) =
                recover_at_start(config, &genesis, log_name(config), storage)?;
            // Another writer on the same stream fences this one out now and then:
            // it then rebuilds its model the way it started.
            let reload = reload_from(
                log_name(config),
                genesis,
                config.snapshot_dir(),
                config.idempotency_keys,
                Arc::new(storage::now_us),
            );
            let writer = writer::Writer::new(model, storage, end, options).with_reload(reload);
            Ok(writer::spawn_writer(writer))
        }
    }
}

fn log_name(config: &Config) -> String {
    config.log.to_string()
}

/// The start of either log: the model from the snapshot and the log, timed and
/// logged, with where the log ends and how the writer is to commit.
fn recover_at_start<S: Recoverable>(
    config: &Config,
    genesis: &BookState,
    name: String,
    mut log: S,
) -> Result<(WriteModel, (LogCursor, S), WriterOptions), StartError> {
    let started = Instant::now();
    let snapshot_dir = config.snapshot_dir();
    let (model, recovery) = recover_model(
        &mut log,
        &name,
        genesis,
        &snapshot_dir,
        config.idempotency_keys,
        storage::now_us(),
    )?;
    // Replay grew the book's tables by doubling; hand the old ones back.
    plumbing::memory::release_free();
    let elapsed = started.elapsed();
    tracing::info!(
        log = %name,
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
    Ok((model, (recovery.cursor, log), options))
}

/// How a writer on a log that other writers can reach rebuilds its model after a
/// fence: [`recover_model`] from the newest snapshot in `snapshot_dir` (else
/// `genesis`), stamping the watermark by `clock`. The JetStream writer's, and the
/// simulated stream's.
pub fn reload_from<S: Recoverable>(
    name: String,
    genesis: BookState,
    snapshot_dir: PathBuf,
    keys_kept: usize,
    clock: writer::Clock,
) -> writer::Reload<S> {
    Box::new(move |storage| {
        recover_model(storage, &name, &genesis, &snapshot_dir, keys_kept, clock())
            .map(|(model, recovery)| (model, recovery.cursor))
            .map_err(|e| e.to_string())
    })
}

/// Rebuilds the write model from the log in `storage` (called `name` in messages):
/// the newest usable snapshot in `snapshot_dir` (else `genesis`), then the log after
/// it through [`storage::recover`], which cuts a torn tail, refuses corruption, and
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
    let (mut model, from) = match checkpoint::load(
        snapshot_dir,
        storage,
        keys_kept,
        &genesis.markets,
    ) {
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
    let recovery = storage::recover(storage, name, from, now_us, |env| {
        model.apply(env).map_err(|e| e.to_string())
    })?;
    Ok((model, recovery))
}
