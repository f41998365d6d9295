//! The single writer. One OS thread owns the write model (the [`Book`](crate::book::Book)) and the
//! log; HTTP handlers send it `(command, reply)` over a bounded channel. It works in
//! group commits: take what is queued (up to [`BATCH_EVENTS_MAX`]), decide and apply
//! each command, encode every event into one buffer, one `write`, one `fdatasync`,
//! then answer the whole batch. A failed write or sync is fatal: the batch gets 503,
//! the writer stops, and the process is expected to exit non-zero. fsync is never
//! retried: after a failed fsync the kernel may have dropped the dirty pages.
//!
//! Where the log gives a second handle that syncs ([`Storage::syncer`]: a file), the
//! sync runs on a syncer thread while this one takes, decides and writes the next
//! batch (`Writer::run_pipelined`'s doc says how, and what waits for what); the
//! answers of a batch are handed to the runtime in one task (`Durability::deliver`).
//!
//! [`Writer::commit_batch`] is one group commit synced in line, and
//! [`Writer::commit_answering`] one with the fence handling around it, both callable
//! without the thread: the simulator (`foldbook-sim`) drives the writer through them
//! batch by batch. The pipelined path runs only on threads; its ordering (a write,
//! its sync, its watermark, before the next write) and its failures are tested with
//! a storage that holds and fails syncs (`command-svc/tests/group_commit.rs`), and
//! the crash tests kill it under load.
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
use crate::storage::{Storage, Syncer};
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
        Outcome::of(env.clone(), durable)
    }

    /// [`Outcome::new`], taking the event's parts instead of copying them.
    pub fn of(env: Envelope, durable: bool) -> Outcome {
        let market = env.event.market().unwrap_or(shared_events::DEFAULT_MARKET);
        let deposit = matches!(env.event, Event::Deposited { .. });
        match env.event {
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
                order,
                fills,
                resting_qty,
                tif,
                market_order,
                unfilled_qty,
                cancelled_makers,
                balances,
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
                order_id,
                new_order_id,
                price: new_price,
                qty: new_qty,
                fills,
                resting_qty,
                balances,
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
                market,
                user,
                cancelled: orders,
                balances,
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
                order_id,
                cancelled_qty,
                balances,
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
                transfer: if deposit { "deposit" } else { "withdrawal" },
                user,
                asset,
                amount,
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

impl CommitFailure {
    /// The failure of step `what`: a fence if the error carries one, else fatal.
    fn of(what: &str, e: std::io::Error) -> CommitFailure {
        match crate::storage::Fenced::of(&e) {
            Some(fenced) => CommitFailure::Fenced {
                landed: fenced.landed,
                reason: fenced.message.clone(),
            },
            None => CommitFailure::Failed(format!("{what}: {e}")),
        }
    }
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
    let (stats, durable) = (
        writer.durability.stats.clone(),
        writer.durability.durable.subscribe(),
    );
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

/// A batch decided and applied, its new events encoded in the writer's buffer.
struct Decided {
    /// Each command's event, or why it wrote nothing, in order.
    answers: Vec<Result<Envelope, Rejection>>,
    /// The seq of the batch's first new event (if it has any).
    first_seq: u64,
    new_events: u64,
    /// Where each new event's line ends in the buffer.
    line_ends: Vec<usize>,
}

impl Decided {
    /// The answers, taking the events' parts (`durable`: the batch was synced).
    fn outcomes(self, durable: bool) -> impl Iterator<Item = Result<Outcome, Rejection>> {
        (self.answers.into_iter()).map(move |decided| decided.map(|env| Outcome::of(env, durable)))
    }
}

/// A batch written to the log and handed to the syncer thread, which answers it
/// once it is durable.
struct SyncJob {
    decided: Decided,
    /// One per command, in order.
    replies: Vec<Reply>,
    /// The last seq decided: every answer of the batch may rest on the events up to
    /// it, so none goes out before they are durable.
    head_seq: u64,
    /// The log's length after the batch's lines.
    end_offset: u64,
}

/// A [`Storage`] used as its own [`Syncer`]: the writer syncing in line.
struct InLine<'a, S>(&'a mut S);

impl<S: Storage> Syncer for InLine<'_, S> {
    fn sync(&mut self) -> std::io::Result<()> {
        self.0.sync()
    }

    fn publish_durable(&mut self, mark: Watermark) -> std::io::Result<()> {
        self.0.publish_durable(mark)
    }
}

/// What makes written batches durable and tells everyone: the sync, the
/// watermark, the counters, the answers. The writer's own when it syncs in line;
/// a copy on the syncer thread when it is pipelined.
#[derive(Clone)]
struct Durability {
    fsync: FsyncMode,
    stats: Arc<WriterStats>,
    /// The durable seq, for tasks that wait for it.
    durable: Arc<watch::Sender<u64>>,
    metrics: WriterMetrics,
    /// Commit timestamps.
    clock: Clock,
    /// The runtime the handlers wait on, to hand each batch's answers over in one
    /// wake-up (`None` outside one: each answer wakes its handler itself).
    runtime: Option<tokio::runtime::Handle>,
}

impl Durability {
    /// Syncs (unless `--fsync never`), then tells readers how far the log is
    /// durable, stamped with the time it became so. Any failure but a fence is fatal.
    fn sync(
        &self,
        storage: &mut dyn Syncer,
        seq: u64,
        end_offset: u64,
    ) -> Result<(), CommitFailure> {
        self.sync_only(storage)?;
        self.publish(storage, seq, end_offset)
    }

    /// The sync alone (unless `--fsync never`), timed.
    fn sync_only(&self, storage: &mut dyn Syncer) -> Result<(), CommitFailure> {
        if self.fsync == FsyncMode::Always {
            let started = std::time::Instant::now();
            storage
                .sync()
                .map_err(|e| CommitFailure::of("fdatasync", e))?;
            self.metrics
                .fsync_seconds
                .record(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Tells readers the log is durable through `seq` (ending at `end_offset`).
    fn publish(
        &self,
        storage: &mut dyn Syncer,
        seq: u64,
        end_offset: u64,
    ) -> Result<(), CommitFailure> {
        let mark = Watermark {
            seq,
            offset: end_offset,
            ts_us: (self.clock)(),
        };
        storage
            .publish_durable(mark)
            .map_err(|e| CommitFailure::of("durable watermark", e))
    }

    /// Records that the log is durable through `durable_seq`, after a batch of
    /// which `landed` events landed; `head_seq` is the last decided.
    fn durable_through(&self, durable_seq: u64, landed: u64, head_seq: u64) {
        let stats = &self.stats;
        stats.events_appended.fetch_add(landed, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.durable_seq.store(durable_seq, Ordering::Release);
        self.metrics.events_appended.increment(landed);
        self.metrics.batches.increment(1);
        self.metrics.batch_events.record(landed as f64);
        self.metrics.head_seq.set(head_seq as f64);
        self.metrics.durable_seq.set(durable_seq as f64);
        self.durable.send_replace(durable_seq);
    }

    /// Hands each answer to its waiting handler. A handler woken from this thread,
    /// outside the runtime, costs a cross-thread wake-up each (the runtime's shared
    /// queue, often a sleeping worker's futex); one task spawned on the runtime for
    /// the whole batch wakes them all from inside it instead.
    fn deliver<A>(&self, answers: A)
    where
        A: IntoIterator<Item = (Reply, Result<Outcome, DispatchError>)>,
        A::IntoIter: Send + 'static,
    {
        let answers = answers.into_iter();
        let send = move || {
            // A client that went away just does not read its answer.
            answers.for_each(|(reply, answer)| {
                let _ = reply.send(answer);
            })
        };
        match &self.runtime {
            Some(runtime) => drop(runtime.spawn(async move { send() })),
            None => send(),
        }
    }

    /// Answers every command of a batch that `reason` (a failed write or sync)
    /// kept from the log: 503, it may not have been written.
    fn refuse(&self, replies: Vec<Reply>, reason: &str) {
        let why = format!("log write failed: {reason}");
        self.deliver(
            (replies.into_iter())
                .map(move |reply| (reply, Err(DispatchError::Unavailable(why.clone())))),
        );
    }

    /// The syncer thread: makes each job durable and answers it ([`Durability::finish`]),
    /// then tells the writer it may hand over the next. A failed sync answers its
    /// job 503, tells the writer why, and ends the thread (fail-stop: never retried).
    fn sync_loop(
        &self,
        mut syncer: Box<dyn Syncer>,
        jobs: &mpsc::Receiver<SyncJob>,
        ready: &mpsc::SyncSender<Result<(), String>>,
    ) {
        while let Ok(job) = jobs.recv() {
            let result = self.finish(&mut *syncer, job);
            let failed = result.is_err();
            let _ = ready.send(result);
            if failed {
                return;
            }
        }
    }

    /// Makes `job` durable through `syncer` and answers it: on success, once its
    /// events are durable; on failure, 503, and the error says why (fail-stop).
    fn finish(&self, syncer: &mut dyn Syncer, job: SyncJob) -> Result<(), String> {
        let SyncJob {
            decided,
            replies,
            head_seq,
            end_offset,
        } = job;
        let landed = decided.new_events;
        let failed = |what: CommitFailure| match what {
            CommitFailure::Failed(reason) => reason,
            CommitFailure::Fenced { reason, .. } => {
                format!("a log that fences its writers cannot be pipelined: {reason}")
            }
        };
        // A batch without new events rests on events the last sync covered.
        if landed > 0
            && let Err(failure) = self.sync_only(syncer)
        {
            let reason = failed(failure);
            self.refuse(replies, &reason);
            return Err(reason);
        }
        // Durable now: the process's own record says so first (a client answered
        // next sees it in /health), then the batch is answered, lazily (the answers
        // are made from the events on the runtime, off this thread, which may have
        // the next batch to sync). The watermark file follows: readers learn of the
        // batch a moment after its writers, and a failure to tell them is fatal but
        // takes back nothing.
        if landed > 0 {
            self.durable_through(head_seq, landed, head_seq);
        }
        let answers = (replies.into_iter()).zip(
            decided
                .outcomes(true)
                .map(|a| a.map_err(DispatchError::from)),
        );
        self.deliver(answers);
        if landed > 0 {
            self.publish(syncer, head_seq, end_offset).map_err(failed)?;
        }
        Ok(())
    }
}

/// The single writer: the write model, the log, and group commit. [`spawn`] runs it
/// on its own thread; a simulation calls [`Writer::commit_batch`] directly.
pub struct Writer<S> {
    /// The book and the idempotency index.
    model: WriteModel,
    storage: S,
    /// The seq the next event gets.
    next_seq: u64,
    /// Log length after the last batch written.
    offset: u64,
    /// The sync, the watermark, the counters and the answers.
    durability: Durability,
    /// Writes snapshots, if any are wanted.
    snapshots: Option<Checkpointer>,
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
#[derive(Clone)]
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
            durability: Durability {
                fsync: options.fsync,
                stats,
                durable: Arc::new(watch::channel(last_seq).0),
                metrics: WriterMetrics::new(),
                clock: Arc::new(crate::storage::now_us),
                runtime: tokio::runtime::Handle::try_current().ok(),
            },
            snapshots: options.snapshots.map(|o| Checkpointer::new(o, last_seq)),
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
        let d = &self.durability;
        d.stats.head_seq.store(seq, Ordering::Release);
        d.stats.durable_seq.store(seq, Ordering::Release);
        d.stats.set_digests(seq, &self.model.book);
        d.metrics.head_seq.set(seq as f64);
        d.metrics.durable_seq.set(seq as f64);
        d.durable.send_replace(seq);
        tracing::info!(
            seq,
            "write side reloaded the log after another writer appended"
        );
        Ok(())
    }

    /// The same writer with another clock for commit timestamps.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.durability.clock = clock;
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
        &self.durability.stats
    }

    fn run(mut self, rx: mpsc::Receiver<Request>) -> Result<(), String> {
        // A log that can sync on a second handle, with syncs to wait for: the
        // pipeline. Otherwise (JetStream, which fences, or `--fsync never`) in line.
        let syncer = match self.durability.fsync {
            FsyncMode::Always => self.storage.syncer().map_err(|e| e.to_string())?,
            FsyncMode::Never => None,
        };
        let result = match syncer {
            Some(syncer) => self.run_pipelined(&rx, syncer),
            None => self.run_in_line(&rx),
        };
        if result.is_ok() {
            self.final_checkpoint();
        }
        result
    }

    /// Takes the next batch from the queue: `first`, then whatever else is queued
    /// (up to [`BATCH_EVENTS_MAX`]), lingering for more when `linger` says so. Stops
    /// at a stop request, and says whether it met one.
    fn gather(
        rx: &mpsc::Receiver<Request>,
        first: Request,
        linger: bool,
        batch: &mut Vec<Command>,
        replies: &mut Vec<Reply>,
    ) -> bool {
        let linger_until = Instant::now() + BATCH_LINGER_MAX;
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Command(cmd, reply) => {
                    batch.push(cmd);
                    replies.push(reply);
                }
                Request::Stop => return true,
            }
            if batch.len() >= BATCH_EVENTS_MAX {
                break;
            }
            next = rx.try_recv().ok();
            if next.is_none() && linger {
                let quiet =
                    BATCH_LINGER_QUIET.min(linger_until.saturating_duration_since(Instant::now()));
                next = rx.recv_timeout(quiet).ok();
            }
        }
        false
    }

    /// The writer in line: each batch is decided, written, synced and answered
    /// before the next is taken.
    fn run_in_line(&mut self, rx: &mpsc::Receiver<Request>) -> Result<(), String> {
        let mut batch: Vec<Command> = Vec::with_capacity(BATCH_EVENTS_MAX);
        let mut replies: Vec<Reply> = Vec::with_capacity(BATCH_EVENTS_MAX);
        let mut stopping = false;
        let mut last_batch = 0usize;
        while !stopping {
            let Ok(first) = rx.recv() else {
                break;
            };
            // Under concurrent load (the last batch had several commands), wait a
            // moment for commands still on their way before paying for an fsync:
            // clients answered by the previous batch come back within a round trip,
            // and a batch that takes them along saves them a whole fsync. Without
            // fsyncs (`--fsync never`) there is nothing to save: no lingering.
            let linger = last_batch > 1 && self.durability.fsync == FsyncMode::Always;
            stopping = Self::gather(rx, first, linger, &mut batch, &mut replies);
            last_batch = batch.len();
            if !batch.is_empty() {
                self.commit_and_answer(std::mem::take(&mut batch), &mut replies)?;
            }
            self.maybe_checkpoint();
        }
        Ok(())
    }

    /// The writer pipelined with a syncer thread: while the syncer makes batch N
    /// durable, commands queue up; once it is, the writer takes them all as batch
    /// N+1, decides and writes them and hands them over, while the syncer answers
    /// batch N. One batch is being synced at a time, and it holds whatever arrived
    /// during the sync before it, so batches grow with the load without a timer
    /// (no lingering, and no wake-up per arriving command). Answers go out only
    /// after the sync that covers their batch, and a batch's answers, rejections
    /// included, only after every event decided before them is durable. A lone
    /// command (nothing else queued) is synced by this thread itself: with one
    /// command at a time there is nothing to overlap, and the hand-off would only
    /// add a thread wake-up to its latency.
    fn run_pipelined(
        &mut self,
        rx: &mpsc::Receiver<Request>,
        syncer: Box<dyn Syncer>,
    ) -> Result<(), String> {
        let (jobs, job_rx) = mpsc::sync_channel::<SyncJob>(1);
        let (ready_tx, ready) = mpsc::sync_channel::<Result<(), String>>(1);
        let durability = self.durability.clone();
        let thread = std::thread::Builder::new()
            .name("syncer".into())
            .spawn(move || durability.sync_loop(syncer, &job_rx, &ready_tx))
            .map_err(|e| format!("spawning the syncer thread: {e}"))?;
        let mut batch: Vec<Command> = Vec::with_capacity(BATCH_EVENTS_MAX);
        let mut replies: Vec<Reply> = Vec::with_capacity(BATCH_EVENTS_MAX);
        let mut in_flight = false;
        let mut stopping = false;
        let result = loop {
            if in_flight {
                match ready.recv() {
                    Ok(Ok(())) => in_flight = false,
                    Ok(Err(reason)) => break Err(reason),
                    Err(_) => break Err("the syncer thread stopped".to_owned()),
                }
                // Everything decided is durable now: a snapshot may be taken.
                self.maybe_checkpoint();
            }
            if stopping {
                break Ok(());
            }
            let Ok(first) = rx.recv() else {
                break Ok(());
            };
            stopping = Self::gather(rx, first, false, &mut batch, &mut replies);
            if batch.is_empty() {
                continue;
            }
            let decided = self.decide(&batch);
            batch.clear();
            let end_offset = self.offset + self.buf.len() as u64;
            if decided.new_events > 0 {
                if let Err(e) = self.storage.append(&self.buf) {
                    // Nothing is in flight (its sync was awaited above).
                    let reason = format!("write: {e}");
                    self.durability
                        .refuse(std::mem::take(&mut replies), &reason);
                    break Err(reason);
                }
                self.offset = end_offset;
            }
            let job = SyncJob {
                decided,
                replies: std::mem::take(&mut replies),
                head_seq: self.next_seq - 1,
                end_offset,
            };
            if job.replies.len() == 1 {
                // A lone command, nothing else queued: the load is one command at a
                // time, nothing would be decided during its sync, and handing it to
                // the syncer would only add a thread wake-up to its latency. The
                // syncer is idle (nothing is in flight), so this thread syncs it.
                if let Err(reason) = self.durability.finish(&mut InLine(&mut self.storage), job) {
                    break Err(reason);
                }
                self.maybe_checkpoint();
                continue;
            }
            if jobs.send(job).is_err() {
                break Err("the syncer thread stopped".to_owned());
            }
            in_flight = true;
        };
        drop(jobs);
        if thread.join().is_err() {
            return Err("the syncer thread panicked".to_owned());
        }
        result
    }

    /// Commits `batch` and answers `replies` (one per command, in order);
    /// [`Writer::commit_answering`] says how.
    fn commit_and_answer(
        &mut self,
        batch: Vec<Command>,
        replies: &mut Vec<Reply>,
    ) -> Result<(), String> {
        let mut answers = Vec::with_capacity(replies.len());
        let mut replies = replies.drain(..);
        let result = self.commit_answering(batch, |answer| {
            let reply = replies.next().expect("one reply per command");
            answers.push((reply, answer));
        });
        self.durability.deliver(answers);
        result
    }

    /// Commits `batch` and gives each command its answer through `answer`, in
    /// order, each exactly once. A fenced commit answers what landed, reloads, and
    /// decides the rest again, at most [`FENCED_RETRIES_MAX`] times, then answers
    /// them 503. `Err` is a fatal failure (every command not answered by then gets
    /// 503), after which the writer must stop. The writer thread runs this for
    /// every batch of a log synced in line; a simulation calls it directly.
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

    /// Decides and applies each command in order, encoding each new event's line
    /// into `self.buf` (cleared first); publishes the new head. No I/O: the lines
    /// are not written yet.
    fn decide(&mut self, commands: &[Command]) -> Decided {
        let ts_us = (self.durability.clock)();
        let first_seq = self.next_seq;
        self.buf.clear();
        let mut decided = Decided {
            answers: Vec::with_capacity(commands.len()),
            first_seq,
            new_events: 0,
            line_ends: Vec::new(),
        };
        for cmd in commands {
            decided.answers.push(match self.model.keys.check(cmd) {
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
                    decided.new_events += 1;
                    shared_events::encode_into(&mut self.buf, &env);
                    decided.line_ends.push(self.buf.len());
                    env
                }),
            });
        }
        let head_seq = self.next_seq - 1;
        let stats = &self.durability.stats;
        stats.head_seq.store(head_seq, Ordering::Release);
        stats.set_digests(head_seq, &self.model.book);
        decided
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
        let decided = self.decide(&commands);
        let (first_seq, new_events) = (decided.first_seq, decided.new_events);
        let head_seq = self.next_seq - 1;
        let durable = self.durability.fsync == FsyncMode::Always;
        if new_events == 0 {
            return Ok(decided.outcomes(durable).collect());
        }
        let end_offset = self.offset + self.buf.len() as u64;
        let committed = (self.storage.append(&self.buf))
            .map_err(|e| CommitFailure::of("write", e))
            .and_then(|()| {
                (self.durability).sync(&mut InLine(&mut self.storage), head_seq, end_offset)
            });
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
        self.offset += decided.line_ends[..landed as usize]
            .last()
            .map_or(0, |&end| end as u64);
        self.durability
            .durable_through(first_seq + landed - 1, landed, head_seq);
        let Some(reason) = fenced else {
            debug_assert_eq!(self.offset, end_offset);
            return Ok(decided.outcomes(durable).collect());
        };
        // The commands up to the one whose event did not land keep their answers;
        // from it on they are decided again after a reload.
        self.stale = true;
        let first_lost = first_seq + landed;
        let split = (decided.answers.iter())
            .position(|d| d.as_ref().is_ok_and(|env| env.seq >= first_lost))
            .expect("an event that did not land belongs to a command");
        let answered = decided.outcomes(durable).take(split).collect();
        let retry = commands.into_iter().skip(split).collect();
        Err(CommitError::Fenced {
            answered,
            retry,
            reason,
        })
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
