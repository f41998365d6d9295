//! # query-svc: the read side
//!
//! Tails the log written by command-svc, folds it into read models, and serves them.
//! It never decides anything: it applies the facts the log records.
//!
//! ## Layout
//!
//! - [`projection`]: the read model and its pure fold; the immutable [`BookView`]
//!   readers are handed.
//! - [`source`]: the log as the read side sees it: the durable watermark, the bytes
//!   from an offset, wake-ups ([`source::LogSource`]); the file implementation.
//! - [`jetstream_source`]: the same for a NATS JetStream stream, read through
//!   `plumbing::jetstream` (the client, its settings, the generic stream reading).
//! - [`tailer`]: follows the log (notify + poll) up to the durable watermark,
//!   verifies and applies lines, publishes views and live events, writes
//!   checkpoints.
//! - [`checkpoint`]: the read side's snapshots (files).
//! - [`file_watch`]: change notifications for the log file (the tailer's wake-ups).
//! - [`describe`]: `# HELP` text of the read side's metrics.
//! - [`history`]: the past from the log: the book at seq N, events from seq N.
//! - [`events`]: `/events`, Server-Sent Events, history then live.
//! - [`http`]: warp routes for `/orderbook`, `/orders`, `/users`, `/trades`,
//!   `/events`, `/health`, with read-your-writes (`min_seq`).
//!
//! [`start`] loads the newest snapshot (or `init.txt`), publishes it and starts the
//! tailer on the file or the stream. Handlers read a [`QueryState`]: the current view plus the concurrent
//! indexes.

pub mod checkpoint;
pub mod describe;
pub mod events;
pub mod file_watch;
pub mod history;
pub mod http;
pub mod index;
pub mod jetstream_source;
pub mod projection;
pub mod source;
pub mod tailer;

use arc_swap::ArcSwap;
use history::{Archive, LineEvent, SeekIndex};
use index::OrderIndex;
use plumbing::jetstream::{JetStream, JetStreamAddress, JetStreamError};
use projection::{BookView, ReadModel, TradeView, UserOrders};
use shared_events::state::MarketSpec;
use shared_events::{BookState, LogCursor, LogLocation, StateError, Symbol};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::sync::{Semaphore, broadcast, watch};

/// Applied batches buffered for live event streams; a stream further behind goes back
/// to reading history from the log ([`events`]).
pub const LIVE_BATCHES_BUFFERED: usize = 1024;
/// Most concurrent `/events` streams.
pub const SSE_SUBSCRIBERS_MAX: usize = 256;
/// Most time-travel books computed at once (each replays part of the log).
pub const TIME_TRAVEL_CONCURRENCY: usize = 2;
/// Time-travel answers kept, most recent first.
pub const TIME_TRAVEL_CACHED: usize = 32;

/// Where the read side finds its files.
#[derive(Debug, Clone)]
pub struct Config {
    pub init: PathBuf,
    /// The log: a file, or a JetStream stream.
    pub log: LogLocation,
    /// Snapshot directory; `None`: `snapshots/` beside a log file,
    /// `snapshots-<stream>/` for a stream.
    pub snapshots: Option<PathBuf>,
    /// Events between snapshots (0: only at a clean stop).
    pub snapshot_every: u64,
    /// Ignore snapshots and rebuild the read model from genesis.
    pub rebuild: bool,
    /// Finished orders kept besides the resting ones (`/orders/{id}`, user lists).
    pub finished_orders_kept: usize,
    /// The markets to hold (`--markets`); `None`: every market of `init.txt`.
    pub markets: Option<Vec<Symbol>>,
}

impl Config {
    /// A config with the defaults for everything but the genesis file and the log.
    pub fn new(init: impl Into<PathBuf>, log: impl Into<LogLocation>) -> Self {
        Config {
            init: init.into(),
            log: log.into(),
            snapshots: None,
            snapshot_every: checkpoint::SNAPSHOT_EVERY_DEFAULT,
            rebuild: false,
            finished_orders_kept: projection::FINISHED_ORDERS_KEPT_DEFAULT,
            markets: None,
        }
    }

    pub fn snapshot_dir(&self) -> PathBuf {
        self.snapshots
            .clone()
            .unwrap_or_else(|| self.log.default_snapshot_dir())
    }
}

/// What the read handlers see. Written only by the tailer.
pub struct QueryState {
    /// The markets (from the genesis state), the default first.
    pub markets: Arc<[MarketSpec]>,
    /// Which of them this side holds, by index (see [`ReadModel::held`]).
    pub held: Arc<[bool]>,
    /// The books as of the last applied batch.
    view: ArcSwap<BookView>,
    /// Every order by id.
    pub orders: Arc<OrderIndex>,
    /// Each user's order ids, oldest first.
    pub user_orders: Arc<UserOrders>,
    /// Recent trades, oldest first.
    pub trades: Arc<RwLock<VecDeque<TradeView>>>,
    /// Why applying stopped, while it is stopped.
    error: Mutex<Option<String>>,
    /// Applied seq, for tasks that wait for it.
    applied: watch::Sender<u64>,
    /// The writer's durable seq, as last read from its watermark.
    durable_seq: AtomicU64,
    /// Commit-to-visible lag of the last applied event, in microseconds.
    last_lag_us: AtomicU64,
    /// When this read side started.
    started: Instant,
    /// Finished orders the model keeps (for messages).
    finished_kept: usize,
    /// Where the past is read from (time travel, event history).
    pub archive: Archive,
    /// Known log positions, for reading old events without starting at byte 0.
    pub seek: SeekIndex,
    /// Each applied batch's events, for live event streams (empty: applied without
    /// keeping the lines, which are in the log).
    pub live: broadcast::Sender<Arc<Vec<LineEvent>>>,
    /// Slots for `/events` streams.
    pub subscribers: Arc<Semaphore>,
    /// Becomes true when the process stops: event streams end.
    closing: watch::Sender<bool>,
    /// Slots for computing time-travel books.
    pub time_travel: Semaphore,
    /// Recent time-travel books, most recent first.
    pub time_travel_cache: Mutex<VecDeque<Arc<BookView>>>,
}

impl QueryState {
    /// The state of a read side that starts at `model`, at log position `start`.
    pub fn new(model: &ReadModel, archive: Archive, start: LogCursor) -> Self {
        QueryState {
            markets: model.markets.clone(),
            held: model.held.clone(),
            view: ArcSwap::from_pointee(model.book_view()),
            orders: model.orders.clone(),
            user_orders: model.user_orders.clone(),
            trades: model.trades.clone(),
            error: Mutex::new(None),
            applied: watch::channel(model.seq).0,
            durable_seq: AtomicU64::new(0),
            last_lag_us: AtomicU64::new(0),
            started: Instant::now(),
            finished_kept: model.finished_kept,
            archive,
            seek: SeekIndex::new(start),
            live: broadcast::channel(LIVE_BATCHES_BUFFERED).0,
            subscribers: Arc::new(Semaphore::new(SSE_SUBSCRIBERS_MAX)),
            closing: watch::channel(false).0,
            time_travel: Semaphore::new(TIME_TRAVEL_CONCURRENCY),
            time_travel_cache: Mutex::new(VecDeque::new()),
        }
    }

    /// The current immutable view.
    pub fn view(&self) -> Arc<BookView> {
        self.view.load_full()
    }

    /// Last applied seq.
    pub fn applied_seq(&self) -> u64 {
        *self.applied.borrow()
    }

    /// A receiver that sees every newly applied seq.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// The writer's durable seq as this side last saw it.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq.load(Ordering::Relaxed)
    }

    /// Commit-to-visible lag of the last applied event, in microseconds.
    pub fn last_lag_us(&self) -> u64 {
        self.last_lag_us.load(Ordering::Relaxed)
    }

    fn set_last_lag_us(&self, lag_us: u64) {
        self.last_lag_us.store(lag_us, Ordering::Relaxed);
    }

    fn set_durable_seq(&self, seq: u64) {
        self.durable_seq.store(seq, Ordering::Relaxed);
    }

    fn publish(&self, view: BookView) {
        let seq = view.seq;
        self.view.store(Arc::new(view));
        self.applied.send_replace(seq);
    }

    /// Sets or clears the error; true when it changed.
    fn set_error(&self, error: Option<String>) -> bool {
        let mut slot = self.error.lock().expect("error lock");
        let changed = *slot != error;
        *slot = error;
        changed
    }

    /// Why applying is stopped, if it is.
    pub fn error(&self) -> Option<String> {
        self.error.lock().expect("error lock").clone()
    }

    /// Finished orders the model keeps besides the resting ones.
    pub fn finished_kept(&self) -> usize {
        self.finished_kept
    }

    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Ends every event stream (the process is stopping; they would hold it up).
    pub fn close_subscriptions(&self) {
        self.closing.send_replace(true);
    }

    /// A receiver that turns true when streams must end.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }
}

/// A running read side: its state and the tailer that feeds it.
pub struct QueryService {
    pub state: Arc<QueryState>,
    tailer: tailer::TailerTask,
}

impl QueryService {
    /// Stops the tailer (which writes a final snapshot).
    pub fn stop(self) {
        self.state.close_subscriptions();
        self.tailer.stop();
    }
}

/// Why the read side cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Init(#[from] StateError),
    #[error(transparent)]
    JetStream(#[from] JetStreamError),
    #[error("--markets names {named}, which {init} does not list (it lists {listed})")]
    UnknownMarket {
        named: Symbol,
        init: String,
        listed: String,
    },
}

/// Which markets of `genesis` a read side configured with `markets` holds, by
/// index; every one when `markets` is `None`.
pub fn held_markets(
    genesis: &BookState,
    markets: Option<&[Symbol]>,
    init: &std::path::Path,
) -> Result<Arc<[bool]>, StartError> {
    let Some(markets) = markets else {
        return Ok(vec![true; genesis.markets.len()].into());
    };
    for &named in markets {
        if genesis.market_index(named).is_none() {
            return Err(StartError::UnknownMarket {
                named,
                init: init.display().to_string(),
                listed: shared_events::state::symbols(&genesis.markets),
            });
        }
    }
    Ok((genesis.markets.iter())
        .map(|m| markets.contains(&m.symbol))
        .collect())
}

/// Loads the newest usable snapshot (else the genesis state) and starts tailing the
/// log from there (waiting for it if missing): the file, or the stream.
pub fn start(config: &Config) -> Result<QueryService, StartError> {
    start_with(config, None)
}

/// [`start`], on the JetStream client `js` when the log is a stream and one is given
/// (the combined gateway shares one client between both sides).
pub fn start_with(config: &Config, js: Option<Arc<JetStream>>) -> Result<QueryService, StartError> {
    let genesis = BookState::load(&config.init)?;
    let held = held_markets(&genesis, config.markets.as_deref(), &config.init)?;
    let dir = config.snapshot_dir();
    let (mut model, cursor, source, log): (
        _,
        _,
        Box<dyn source::LogSource>,
        Box<dyn history::OpenLog>,
    ) = match &config.log {
        LogLocation::File(path) => {
            let mut log = shared_events::FileLog::new(path);
            let (model, cursor) =
                load_model_holding(&genesis, &dir, &mut log, config.rebuild, &held);
            let source = Box::new(source::FileSource::new(path));
            (model, cursor, source, Box::new(path.clone()))
        }
        LogLocation::JetStream(url) => {
            let js = match js {
                Some(js) => js,
                None => {
                    let address = JetStreamAddress {
                        servers: url.server_urls(),
                        stream: url.stream.clone(),
                        subject: url.subject(),
                        shown: url.to_string(),
                    };
                    JetStream::connect(&address, "foldbook query-svc")?
                }
            };
            let mut log = jetstream_source::JetStreamLog::new(js.clone());
            let (model, cursor) =
                load_model_holding(&genesis, &dir, &mut log, config.rebuild, &held);
            tracing::info!(url = %url, from_seq = cursor.next_seq, "following a JetStream stream");
            let subjects = jetstream_source::subjects_held(&js, &model.markets, &model.held);
            if let Some(subjects) = &subjects {
                tracing::info!(url = %url, ?subjects, "consuming only the held markets' subjects");
            }
            let source = Box::new(jetstream_source::JetStreamSource::new(
                js.clone(),
                cursor,
                subjects,
            ));
            (
                model,
                cursor,
                source,
                Box::new(jetstream_source::JetStreamOpener(js)),
            )
        }
    };
    model.keep_finished(config.finished_orders_kept);
    // Loading a snapshot builds large tables from temporary ones; hand those back.
    plumbing::memory::release_free();
    let archive = Archive {
        held: model.held.clone(),
        genesis,
        log,
        snapshots: dir.clone(),
    };
    let state = Arc::new(QueryState::new(&model, archive, cursor));
    let setup = tailer::TailerSetup {
        source,
        model,
        cursor,
        snapshots: Some(checkpoint::SnapshotOptions {
            dir,
            every: config.snapshot_every,
        }),
    };
    let tailer = tailer::spawn(setup, state.clone());
    Ok(QueryService { state, tailer })
}

/// The read model to start from and where in `log` it continues: the newest usable
/// snapshot in `dir` (unless `rebuild`), else `genesis` at the start of the log.
pub fn load_model(
    genesis: &BookState,
    dir: &std::path::Path,
    log: &mut dyn shared_events::LogRead,
    rebuild: bool,
) -> (ReadModel, LogCursor) {
    let all: Arc<[bool]> = vec![true; genesis.markets.len()].into();
    load_model_holding(genesis, dir, log, rebuild, &all)
}

/// [`load_model`] of a read side holding the markets `held` says (by index).
pub fn load_model_holding(
    genesis: &BookState,
    dir: &std::path::Path,
    log: &mut dyn shared_events::LogRead,
    rebuild: bool,
    held: &Arc<[bool]>,
) -> (ReadModel, LogCursor) {
    let loaded = if rebuild {
        tracing::info!("--rebuild: ignoring snapshots, rebuilding from genesis");
        None
    } else {
        checkpoint::load(dir, log, &genesis.markets, held)
    };
    match loaded {
        Some((model, cursor, path)) => {
            tracing::info!(seq = model.seq, path = %path.display(), "read side starts from a snapshot");
            (model, cursor)
        }
        None => {
            let model = ReadModel::from_state_holding(genesis, 0, Some(held.clone()));
            (model, LogCursor::start())
        }
    }
}
