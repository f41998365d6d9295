//! The single writer. One OS thread owns the write model (the [`Book`](crate::book::Book)) and the
//! log; HTTP handlers send it `(command, reply)` over a bounded channel. It works in
//! group commits: take what is queued (up to [`BATCH_EVENTS_MAX`]), decide and apply
//! each command, encode every event into one buffer, one `write`, one `fdatasync`,
//! then answer the whole batch. A failed write or sync is fatal: the batch gets 503,
//! the writer stops, and the process is expected to exit non-zero. fsync is never
//! retried: after a failed fsync the kernel may have dropped the dirty pages.
//!
//! [`Writer::commit_batch`] is one group commit, and [`Writer::commit_answering`] one
//! with the fence handling around it, both callable without the thread: the
//! simulator (`foldbook-sim`) drives the writer through them batch by batch.
//!
//! A log that other writers can reach (JetStream) may refuse a batch because
//! another writer appended first ([`crate::storage::Fenced`]): the events that
//! landed are answered, the writer reloads its model from the log
//! ([`Writer::with_reload`]) and decides the other commands again, at most
//! [`FENCED_RETRIES_MAX`] times, then answers them 503. A file log is locked by one
//! writer and never fences.

use crate::checkpoint::{self, Checkpoint, SnapshotOptions};
use crate::command::{Command, Rejection};
use crate::model::WriteModel;
use crate::storage::Storage;
use serde::Serialize;
use shared_events::accounts::{Asset, BalanceChange};
use shared_events::{CancelledOrder, MarketOrder, TimeInForce};

fn is_zero(n: &u64) -> bool {
    *n == 0
}
use shared_events::snapshot::Checkpointer;
use shared_events::state::MarketSpec;
use shared_events::{Envelope, Event, Fill, LogCursor, Order, SCHEMA_VERSION, Symbol, Watermark};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Most commands decided and committed in one write + fdatasync.
pub const BATCH_EVENTS_MAX: usize = 1024;
/// Under load, how long the writer waits for one more command before committing
/// (each arrival restarts it), and the most it lingers in all.
pub const BATCH_LINGER_QUIET: Duration = Duration::from_micros(100);
pub const BATCH_LINGER_MAX: Duration = Duration::from_micros(500);
/// Most commands waiting for the writer; beyond it writes get 503 at once.
pub const QUEUE_COMMANDS_MAX: usize = 8192;
/// How often the commands of a fenced batch are decided again (after a reload)
/// before they are answered 503.
pub const FENCED_RETRIES_MAX: usize = 3;

/// Where commit timestamps come from: microseconds since the Unix epoch. The wall
/// clock ([`crate::storage::now_us`]) by default; the simulator's own in a simulation.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Whether a 2xx waits for `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FsyncMode {
    /// `fdatasync` after every batch, before answering (the default).
    #[default]
    Always,
    /// Never sync: for throwaway runs and benchmarks; answers say `"durable": false`.
    Never,
}

/// What a committed command did: the body of its 2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Placed {
        seq: u64,
        /// The market it was placed in.
        market: Symbol,
        order: Order,
        fills: Vec<Fill>,
        resting_qty: u64,
        /// Time in force, when not `gtc`.
        #[serde(skip_serializing_if = "TimeInForce::is_gtc")]
        tif: TimeInForce,
        /// A market order.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        market_order: bool,
        /// What was cancelled instead of resting (IOC, market order, STP).
        #[serde(skip_serializing_if = "is_zero")]
        unfilled_qty: u64,
        /// Resting orders of the same user self-trade prevention cancelled.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        cancelled_makers: Vec<CancelledOrder>,
        /// With accounts on: the balances it changed.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        balances: Vec<BalanceChange>,
        durable: bool,
    },
    /// An amend.
    Amended {
        seq: u64,
        market: Symbol,
        order_id: u64,
        /// When it lost its place: the id it rests under now.
        #[serde(skip_serializing_if = "Option::is_none")]
        new_order_id: Option<u64>,
        price: u64,
        qty: u64,
        fills: Vec<Fill>,
        resting_qty: u64,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        balances: Vec<BalanceChange>,
        durable: bool,
    },
    /// A cancel-all.
    CancelledAll {
        seq: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        market: Option<Symbol>,
        user: String,
        cancelled: Vec<MarketOrder>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        balances: Vec<BalanceChange>,
        durable: bool,
    },
    Cancelled {
        seq: u64,
        /// The market it rested in.
        market: Symbol,
        order_id: u64,
        cancelled_qty: u64,
        /// With accounts on: the hold it released.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        balances: Vec<BalanceChange>,
    },
    /// A deposit or withdrawal.
    Transferred {
        seq: u64,
        /// `deposit` or `withdrawal`.
        transfer: &'static str,
        user: String,
        asset: Asset,
        amount: u64,
        durable: bool,
    },
}

impl Outcome {
    pub fn seq(&self) -> u64 {
        match self {
            Outcome::Placed { seq, .. }
            | Outcome::Cancelled { seq, .. }
            | Outcome::Transferred { seq, .. }
            | Outcome::Amended { seq, .. }
            | Outcome::CancelledAll { seq, .. } => *seq,
        }
    }

    /// The answer to the command that `env` records (`durable`: synced first).
    pub fn new(env: &Envelope, durable: bool) -> Outcome {
        let market = env.event.market().unwrap_or(shared_events::DEFAULT_MARKET);
        match &env.event {
            Event::OrderPlaced {
                order,
                fills,
                resting_qty,
                tif,
                market_order,
                unfilled_qty,
                cancelled_makers,
                balances,
                ..
            } => Outcome::Placed {
                seq: env.seq,
                market,
                order: order.clone(),
                fills: fills.clone(),
                resting_qty: *resting_qty,
                tif: *tif,
                market_order: *market_order,
                unfilled_qty: *unfilled_qty,
                cancelled_makers: cancelled_makers.clone(),
                balances: balances.clone(),
                durable,
            },
            Event::OrderAmended {
                order_id,
                new_order_id,
                new_price,
                new_qty,
                fills,
                resting_qty,
                balances,
                ..
            } => Outcome::Amended {
                seq: env.seq,
                market,
                order_id: *order_id,
                new_order_id: *new_order_id,
                price: *new_price,
                qty: *new_qty,
                fills: fills.clone(),
                resting_qty: *resting_qty,
                balances: balances.clone(),
                durable,
            },
            Event::OrdersCancelled {
                market,
                user,
                orders,
                balances,
                ..
            } => Outcome::CancelledAll {
                seq: env.seq,
                market: *market,
                user: user.clone(),
                cancelled: orders.clone(),
                balances: balances.clone(),
                durable,
            },
            Event::OrderCancelled {
                order_id,
                cancelled_qty,
                balances,
                ..
            } => Outcome::Cancelled {
                seq: env.seq,
                market,
                order_id: *order_id,
                cancelled_qty: *cancelled_qty,
                balances: balances.clone(),
            },
            Event::Deposited {
                user,
                asset,
                amount,
                ..
            }
            | Event::Withdrawn {
                user,
                asset,
                amount,
                ..
            } => Outcome::Transferred {
                seq: env.seq,
                transfer: if matches!(env.event, Event::Deposited { .. }) {
                    "deposit"
                } else {
                    "withdrawal"
                },
                user: user.clone(),
                asset: *asset,
                amount: *amount,
                durable,
            },
        }
    }
}

/// Why a command got no 2xx.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// 4xx: the book refused it; nothing was written.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// 503: the writer is stopped or failed; the command may not have been written.
    #[error("{0}")]
    Unavailable(String),
    /// 503 with `Retry-After`: the writer's queue is full; nothing was written.
    #[error("the writer is busy ({QUEUE_COMMANDS_MAX} commands queued); retry shortly")]
    Busy,
}

type Reply = oneshot::Sender<Result<Outcome, DispatchError>>;

/// Why a group commit did not go through.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The write, the sync or the watermark failed: nothing of the batch may be
    /// acknowledged (503), the model is ahead of the log, and the writer must not be
    /// used again (fail-stop).
    #[error("{0}")]
    Failed(String),
    /// Another writer appended to the shared log first. `answered` are the answers
    /// to the batch's first commands, whose events landed (or which wrote nothing);
    /// `retry` are the rest, in order, to be decided again after
    /// [`Writer::reload`], since the model is ahead of the log until then.
    #[error("another writer appended to the log first ({} commands to decide again): {reason}", retry.len())]
    Fenced {
        answered: Vec<Result<Outcome, Rejection>>,
        retry: Vec<Command>,
        reason: String,
    },
}

/// Rebuilds the write model from the log in the storage: where a writer that was
/// fenced out starts again (its snapshot, then the log after it).
pub type Reload<S> = Box<dyn FnMut(&mut S) -> Result<(WriteModel, LogCursor), String> + Send>;

/// Why one commit failed, inside the writer.
enum CommitFailure {
    /// Of the batch's new events, the first `landed` are durable.
    Fenced {
        landed: u64,
        reason: String,
    },
    Failed(String),
}

/// What the writer's queue carries.
#[derive(Debug)]
enum Request {
    Command(Command, Reply),
    /// Finish what is queued before this, then stop.
    Stop,
}

/// Counters the writer publishes, read by /health and /metrics.
#[derive(Debug)]
pub struct WriterStats {
    /// When the writer started.
    pub started: std::time::Instant,
    /// Seq of the last event decided (may not be durable yet).
    pub head_seq: AtomicU64,
    /// Seq of the last event made durable (or written, with `--fsync never`).
    pub durable_seq: AtomicU64,
    /// Events appended since start.
    pub events_appended: AtomicU64,
    /// Write + sync rounds since start.
    pub batches: AtomicU64,
    /// Each market's digest (in the order of `markets`; the book's digest is their
    /// wrapping sum; the accounts' digest after the markets') and the seq they
    /// are at, taken together after each batch.
    pub digests: std::sync::Mutex<(u64, Vec<u64>)>,
    /// The markets, the default first (fixed at start, from the genesis state).
    pub markets: Arc<[MarketSpec]>,
    /// Whether accounts are on (fixed at start, from the genesis state).
    pub accounts: bool,
}

impl WriterStats {
    /// Publishes the book's digests at `seq`.
    fn set_digests(&self, seq: u64, book: &crate::book::Book) {
        let mut digests = self.digests.lock().expect("digest lock");
        digests.0 = seq;
        digests.1.clear();
        digests.1.extend(book.market_digests().map(|(_, d)| d));
        // The accounts' digest last: the total is the sum of all of them.
        digests.1.push(book.accounts_digest());
    }

    /// The default market: the first.
    pub fn default_market(&self) -> Symbol {
        self.markets[0].symbol
    }

    /// Whether `symbol` names a market traded here.
    pub fn market(&self, symbol: &str) -> Option<Symbol> {
        let symbol = Symbol::parse(symbol).ok()?;
        shared_events::state::market_index(&self.markets, symbol).map(|_| symbol)
    }
}

/// The cheap, clonable way to talk to the writer.
#[derive(Debug, Clone)]
pub struct CommandHandle {
    tx: mpsc::SyncSender<Request>,
    /// Shared counters.
    pub stats: Arc<WriterStats>,
    /// The durable seq, for tasks that want to wait for it.
    pub durable: watch::Receiver<u64>,
}

impl CommandHandle {
    /// Sends `cmd` to the writer and waits for its outcome: `Ok` only once the
    /// event is in the log (and synced, in `FsyncMode::Always`). When the writer's
    /// queue is full it answers [`DispatchError::Busy`] at once instead of queueing
    /// without bound.
    pub async fn dispatch(&self, cmd: Command) -> Result<Outcome, DispatchError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Request::Command(cmd, reply))
            .map_err(|e| match e {
                mpsc::TrySendError::Full(_) => DispatchError::Busy,
                mpsc::TrySendError::Disconnected(_) => {
                    DispatchError::Unavailable("the writer has stopped".to_owned())
                }
            })?;
        answer.await.unwrap_or_else(|_| {
            Err(DispatchError::Unavailable(
                "the writer stopped before answering".to_owned(),
            ))
        })
    }
}

/// The running writer thread.
#[derive(Debug)]
pub struct WriterTask {
    join: std::thread::JoinHandle<Result<(), String>>,
    /// For the stop request.
    tx: mpsc::SyncSender<Request>,
    /// Becomes `Some(reason)` when the writer fails.
    pub failure: watch::Receiver<Option<String>>,
}

impl WriterTask {
    /// Lets the writer finish what is queued, stops it, and waits for it. The error is
    /// the writer's failure, if it failed.
    pub async fn shutdown(self) -> Result<(), String> {
        let tx = self.tx;
        // Queued behind whatever is waiting; `send` blocks while the queue is full.
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(Request::Stop);
            self.join.join()
        })
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|_| Err("the writer thread panicked".to_owned()))
    }
}

/// How the writer commits and checkpoints.
#[derive(Debug, Clone, Default)]
pub struct WriterOptions {
    pub fsync: FsyncMode,
    /// Snapshots, if any are wanted.
    pub snapshots: Option<SnapshotOptions>,
}

/// Starts the writer on its own thread. `end` is where the log ends: the seq the
/// next event gets and the byte offset it is written at.
pub fn spawn<S: Storage>(
    model: WriteModel,
    storage: S,
    end: LogCursor,
    options: WriterOptions,
) -> (CommandHandle, WriterTask) {
    spawn_writer(Writer::new(model, storage, end, options))
}

/// Starts `writer` on its own thread.
pub fn spawn_writer<S: Storage>(writer: Writer<S>) -> (CommandHandle, WriterTask) {
    let (tx, rx) = mpsc::sync_channel(QUEUE_COMMANDS_MAX);
    let (stats, durable) = (writer.stats.clone(), writer.durable.subscribe());
    let (failure_tx, failure) = watch::channel(None);
    let join = std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || {
            let result = writer.run(rx);
            if let Err(reason) = &result {
                tracing::error!(%reason, "writer failed; stopping");
                failure_tx.send_replace(Some(reason.clone()));
            }
            result
        })
        .expect("spawning the writer thread");
    let handle = CommandHandle {
        tx: tx.clone(),
        stats,
        durable,
    };
    (handle, WriterTask { join, tx, failure })
}

/// The single writer: the write model, the log, and group commit. [`spawn`] runs it
/// on its own thread; a simulation calls [`Writer::commit_batch`] directly.
pub struct Writer<S> {
    /// The book and the idempotency index.
    model: WriteModel,
    storage: S,
    /// The seq the next event gets.
    next_seq: u64,
    /// Log length after the last committed batch.
    offset: u64,
    fsync: FsyncMode,
    stats: Arc<WriterStats>,
    durable: watch::Sender<u64>,
    /// Writes snapshots, if any are wanted.
    snapshots: Option<Checkpointer>,
    metrics: WriterMetrics,
    /// Commit timestamps.
    clock: Clock,
    /// The batch's encoded lines, reused from batch to batch.
    buf: Vec<u8>,
    /// Rebuilds the model after another writer fenced this one out, if the log can
    /// have other writers.
    reload: Option<Reload<S>>,
    /// Set when a fenced commit left the model ahead of the log: no commit until
    /// [`Writer::reload`].
    stale: bool,
}

/// Prometheus handles, looked up once.
struct WriterMetrics {
    events_appended: metrics::Counter,
    batches: metrics::Counter,
    batch_events: metrics::Histogram,
    fsync_seconds: metrics::Histogram,
    head_seq: metrics::Gauge,
    durable_seq: metrics::Gauge,
}

impl WriterMetrics {
    fn new() -> Self {
        WriterMetrics {
            events_appended: metrics::counter!("foldbook_events_appended_total"),
            batches: metrics::counter!("foldbook_fsync_batches_total"),
            batch_events: metrics::histogram!("foldbook_batch_events"),
            fsync_seconds: metrics::histogram!("foldbook_fsync_seconds"),
            head_seq: metrics::gauge!("foldbook_head_seq"),
            durable_seq: metrics::gauge!("foldbook_durable_seq"),
        }
    }
}

impl<S: Storage> Writer<S> {
    /// A writer of `model` whose log, in `storage`, ends at `end`: the seq the next
    /// event gets and the byte offset it is written at.
    pub fn new(model: WriteModel, storage: S, end: LogCursor, options: WriterOptions) -> Self {
        let last_seq = end.next_seq - 1;
        let stats = Arc::new(WriterStats {
            started: std::time::Instant::now(),
            head_seq: AtomicU64::new(last_seq),
            durable_seq: AtomicU64::new(last_seq),
            events_appended: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            digests: std::sync::Mutex::new((
                last_seq,
                (model.book.market_digests().map(|(_, d)| d))
                    .chain([model.book.accounts_digest()])
                    .collect(),
            )),
            markets: model.book.markets().into(),
            accounts: model.book.accounts().is_some(),
        });
        Writer {
            model,
            storage,
            next_seq: end.next_seq,
            offset: end.offset,
            fsync: options.fsync,
            stats,
            durable: watch::channel(last_seq).0,
            snapshots: options.snapshots.map(|o| Checkpointer::new(o, last_seq)),
            metrics: WriterMetrics::new(),
            clock: Arc::new(crate::storage::now_us),
            buf: Vec::with_capacity(BATCH_EVENTS_MAX * 256),
            reload: None,
            stale: false,
        }
    }

    /// The same writer, able to reload its model from the log after another writer
    /// appended first.
    pub fn with_reload(mut self, reload: Reload<S>) -> Self {
        self.reload = Some(reload);
        self
    }

    /// Rebuilds the model from the log after a fenced commit, and continues from
    /// where the log ends now. An error is fatal, like a failed write.
    pub fn reload(&mut self) -> Result<(), String> {
        let reload = self
            .reload
            .as_mut()
            .ok_or("another writer appended to the log, and this log cannot be reloaded")?;
        let (model, end) =
            reload(&mut self.storage).map_err(|e| format!("reloading the log: {e}"))?;
        let seq = end.next_seq - 1;
        self.model = model;
        self.next_seq = end.next_seq;
        self.offset = end.offset;
        self.stale = false;
        self.stats.head_seq.store(seq, Ordering::Release);
        self.stats.durable_seq.store(seq, Ordering::Release);
        self.stats.set_digests(seq, &self.model.book);
        self.metrics.head_seq.set(seq as f64);
        self.metrics.durable_seq.set(seq as f64);
        self.durable.send_replace(seq);
        tracing::info!(
            seq,
            "write side reloaded the log after another writer appended"
        );
        Ok(())
    }

    /// The same writer with another clock for commit timestamps.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The write model as of the last batch.
    pub fn model(&self) -> &WriteModel {
        &self.model
    }

    /// Where the log ends after the last batch: the seq the next event gets and the
    /// byte offset it is written at.
    pub fn log_end(&self) -> (u64, u64) {
        (self.next_seq, self.offset)
    }

    /// The shared counters (head, durable seq, digest).
    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    fn run(mut self, rx: mpsc::Receiver<Request>) -> Result<(), String> {
        let mut batch: Vec<Command> = Vec::with_capacity(BATCH_EVENTS_MAX);
        let mut replies: Vec<Reply> = Vec::with_capacity(BATCH_EVENTS_MAX);
        let mut stopping = false;
        let mut last_batch = 0usize;
        while !stopping {
            let Ok(first) = rx.recv() else {
                break;
            };
            let mut next = Some(first);
            // Under concurrent load (the last batch had several commands), wait a
            // moment for commands still on their way before paying for an fsync:
            // clients answered by the previous batch come back within a round trip,
            // and a batch that takes them along saves them a whole fsync. Without
            // fsyncs (`--fsync never`) there is nothing to save: no lingering.
            let lingering = last_batch > 1 && self.fsync == FsyncMode::Always;
            let linger_until = Instant::now() + BATCH_LINGER_MAX;
            while let Some(request) = next.take() {
                match request {
                    Request::Command(cmd, reply) => {
                        batch.push(cmd);
                        replies.push(reply);
                    }
                    Request::Stop => {
                        stopping = true;
                        break;
                    }
                }
                if batch.len() >= BATCH_EVENTS_MAX {
                    break;
                }
                next = rx.try_recv().ok();
                if next.is_none() && lingering {
                    let quiet = BATCH_LINGER_QUIET
                        .min(linger_until.saturating_duration_since(Instant::now()));
                    next = rx.recv_timeout(quiet).ok();
                }
            }
            last_batch = batch.len();
            self.commit_and_answer(std::mem::take(&mut batch), &mut replies)?;
            self.maybe_checkpoint();
        }
        self.final_checkpoint();
        Ok(())
    }

    /// Commits `batch` and answers `replies` (one per command, in order);
    /// [`Writer::commit_answering`] says how.
    fn commit_and_answer(
        &mut self,
        batch: Vec<Command>,
        replies: &mut Vec<Reply>,
    ) -> Result<(), String> {
        let mut replies = replies.drain(..);
        self.commit_answering(batch, |answer| {
            let reply = replies.next().expect("one reply per command");
            // A client that went away just does not read its answer.
            let _ = reply.send(answer);
        })
    }

    /// Commits `batch` and gives each command its answer through `answer`, in
    /// order, each exactly once. A fenced commit answers what landed, reloads, and
    /// decides the rest again, at most [`FENCED_RETRIES_MAX`] times, then answers
    /// them 503. `Err` is a fatal failure (every command not answered by then gets
    /// 503), after which the writer must stop. The writer thread runs this for
    /// every batch; a simulation calls it directly.
    pub fn commit_answering(
        &mut self,
        mut batch: Vec<Command>,
        mut answer: impl FnMut(Result<Outcome, DispatchError>),
    ) -> Result<(), String> {
        let unavailable = |n: usize, why: &str, answer: &mut dyn FnMut(_)| {
            for _ in 0..n {
                answer(Err(DispatchError::Unavailable(why.to_owned())));
            }
        };
        for attempt in 0.. {
            let commands = batch.len();
            match self.commit_batch(std::mem::take(&mut batch)) {
                Ok(answers) => {
                    answers
                        .into_iter()
                        .for_each(|a| answer(a.map_err(DispatchError::from)));
                    return Ok(());
                }
                Err(CommitError::Fenced {
                    answered,
                    retry,
                    reason,
                }) => {
                    answered
                        .into_iter()
                        .for_each(|a| answer(a.map_err(DispatchError::from)));
                    if let Err(e) = self.reload() {
                        unavailable(retry.len(), &e, &mut answer);
                        return Err(e);
                    }
                    if attempt == FENCED_RETRIES_MAX {
                        let why =
                            format!("another writer keeps appending to the log ({reason}); retry");
                        unavailable(retry.len(), &why, &mut answer);
                        return Ok(());
                    }
                    batch = retry;
                }
                Err(CommitError::Failed(reason)) => {
                    let why = format!("log write failed: {reason}");
                    unavailable(commands, &why, &mut answer);
                    return Err(reason);
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// One group commit: decides and applies each command in order, appends all new
    /// events in one write, syncs (unless `--fsync never`), publishes the durable
    /// watermark, and returns each command's answer, in order (a retry gets its first
    /// answer, a rejection writes nothing). [`CommitError::Failed`] means the write
    /// or the sync failed: nothing of the batch may be acknowledged, the model is
    /// ahead of the log, and the writer must not be used again (fail-stop).
    /// [`CommitError::Fenced`]: another writer appended first; see there.
    ///
    /// One function on purpose: the group commit reads top to bottom (decide each,
    /// encode, one write, one sync, publish, answer), and what each step may do on
    /// failure depends on what the steps before it did.
    pub fn commit_batch(
        &mut self,
        commands: impl IntoIterator<Item = Command>,
    ) -> Result<Vec<Result<Outcome, Rejection>>, CommitError> {
        if self.stale {
            return Err(CommitError::Failed(
                "the model is ahead of the log after a fenced commit; reload first".to_owned(),
            ));
        }
        let commands: Vec<Command> = commands.into_iter().collect();
        let ts_us = (self.clock)();
        let first_seq = self.next_seq;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut decided: Vec<Result<Envelope, Rejection>> = Vec::with_capacity(commands.len());
        // Where each new event's line ends in `buf`.
        let mut line_ends: Vec<usize> = Vec::new();
        let mut new_events = 0u64;
        for cmd in &commands {
            decided.push(match self.model.keys.check(cmd) {
                // A retry: the first answer again, nothing written.
                Some(first) => first.cloned(),
                None => self.model.book.decide(cmd).map(|event| {
                    let env = Envelope {
                        seq: self.next_seq,
                        ts_us,
                        v: SCHEMA_VERSION,
                        event,
                    };
                    self.model
                        .apply(&env)
                        .expect("an event decided against this book fits it");
                    self.next_seq += 1;
                    new_events += 1;
                    shared_events::encode_into(&mut buf, &env);
                    line_ends.push(buf.len());
                    env
                }),
            });
        }
        let head_seq = self.next_seq - 1;
        self.stats.head_seq.store(head_seq, Ordering::Release);
        self.stats.set_digests(head_seq, &self.model.book);
        let durable = self.fsync == FsyncMode::Always;
        let outcome =
            |decided: Result<Envelope, Rejection>| decided.map(|env| Outcome::new(&env, durable));
        if buf.is_empty() {
            self.buf = buf;
            return Ok(decided.into_iter().map(outcome).collect());
        }
        let end_offset = self.offset + buf.len() as u64;
        let committed = self.commit(&buf, head_seq, end_offset);
        self.buf = buf;
        let (landed, fenced) = match committed {
            Ok(()) => (new_events, None),
            Err(CommitFailure::Failed(reason)) => return Err(CommitError::Failed(reason)),
            Err(CommitFailure::Fenced { landed, reason }) => {
                assert!(
                    landed < new_events,
                    "a fenced batch lost some of its events"
                );
                (landed, Some(reason))
            }
        };
        let durable_seq = first_seq + landed - 1;
        self.offset += line_ends[..landed as usize]
            .last()
            .map_or(0, |&end| end as u64);
        self.stats
            .events_appended
            .fetch_add(landed, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.durable_seq.store(durable_seq, Ordering::Release);
        self.metrics.events_appended.increment(landed);
        self.metrics.batches.increment(1);
        self.metrics.batch_events.record(landed as f64);
        self.metrics.head_seq.set(head_seq as f64);
        self.metrics.durable_seq.set(durable_seq as f64);
        self.durable.send_replace(durable_seq);
        let Some(reason) = fenced else {
            debug_assert_eq!(self.offset, end_offset);
            return Ok(decided.into_iter().map(outcome).collect());
        };
        // The commands up to the one whose event did not land keep their answers;
        // from it on they are decided again after a reload.
        self.stale = true;
        let first_lost = first_seq + landed;
        let split = decided
            .iter()
            .position(|d| d.as_ref().is_ok_and(|env| env.seq >= first_lost))
            .expect("an event that did not land belongs to a command");
        let answered = decided.into_iter().take(split).map(outcome).collect();
        let retry = commands.into_iter().skip(split).collect();
        Err(CommitError::Fenced {
            answered,
            retry,
            reason,
        })
    }

    /// Write, sync (unless `--fsync never`), then tell readers how far the log is
    /// durable, stamped with the time it became so. Any failure but a fence is fatal.
    fn commit(&mut self, buf: &[u8], seq: u64, end_offset: u64) -> Result<(), CommitFailure> {
        let failed = |what: &str, e: std::io::Error| match crate::storage::Fenced::of(&e) {
            Some(fenced) => CommitFailure::Fenced {
                landed: fenced.landed,
                reason: fenced.message.clone(),
            },
            None => CommitFailure::Failed(format!("{what}: {e}")),
        };
        self.storage.append(buf).map_err(|e| failed("write", e))?;
        if self.fsync == FsyncMode::Always {
            let started = std::time::Instant::now();
            self.storage.sync().map_err(|e| failed("fdatasync", e))?;
            self.metrics
                .fsync_seconds
                .record(started.elapsed().as_secs_f64());
        }
        let mark = Watermark {
            seq,
            offset: end_offset,
            ts_us: (self.clock)(),
        };
        self.storage
            .publish_durable(mark)
            .map_err(|e| failed("durable watermark", e))
    }

    /// The write model at the last batch, with its log position, ready to be
    /// written as a snapshot.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            seq: self.next_seq - 1,
            log_offset: self.offset,
            body: checkpoint::encode(&self.model),
        }
    }

    /// Every `every` events, copies the book and writes it on another thread.
    fn maybe_checkpoint(&mut self) {
        let Some(mut checkpointer) = self.snapshots.take() else {
            return;
        };
        checkpointer.maybe(self.next_seq - 1, || {
            let checkpoint = self.checkpoint();
            move |dir: &std::path::Path| write_checkpoint(&checkpoint, dir)
        });
        self.snapshots = Some(checkpointer);
    }

    /// At a clean stop, a snapshot of the final state if it moved since the last one.
    fn final_checkpoint(&mut self) {
        let Some(mut checkpointer) = self.snapshots.take() else {
            return;
        };
        checkpointer.finish(self.next_seq - 1, || {
            let checkpoint = self.checkpoint();
            move |dir: &std::path::Path| write_checkpoint(&checkpoint, dir)
        });
    }
}

fn write_checkpoint(checkpoint: &Checkpoint, dir: &std::path::Path) {
    let started = std::time::Instant::now();
    match checkpoint.write(dir) {
        Ok(path) => tracing::info!(
            seq = checkpoint.seq,
            path = %path.display(),
            ms = started.elapsed().as_millis() as u64,
            "write side snapshot written"
        ),
        // A missing snapshot costs replay time, never data: warn and go on.
        Err(e) => tracing::warn!(seq = checkpoint.seq, error = %e, "write side snapshot failed"),
    }
}
