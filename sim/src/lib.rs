//! # Deterministic simulation of the storage path
//!
//! Crash tests with real processes find what happens to occur; this finds what can
//! occur, and replays it exactly. One seed drives everything: a random workload
//! (orders of every type: limit GTC, IOC, FOK, post-only, market orders, each with
//! self-trade prevention now and then; amends, cancels and cancel-alls; idempotent
//! retries and conflicting reuses of keys; on odd seeds
//! with accounts on, `init-accounts.txt`, deposits and withdrawals too), faults on a
//! simulated disk ([`disk`]: failed writes and syncs, writes torn at any byte, power
//! cuts that keep none, some, some and garbage, or a scribbled last line of the
//! unsynced bytes, a lost watermark file,
//! late or lost change notifications, flipped bytes in synced lines), process
//! crashes and restarts of either side, and snapshots of either side. There is no
//! wall clock (a simulated clock stamps events), no thread in the loop, and no
//! randomness but the seed's, so `run_seed(seed)` does the same thing every time.
//!
//! Each seed runs on two logs: the file log on the simulated disk ([`run_seed`]), and
//! a simulated JetStream stream ([`stream`], [`run_stream_seed`]) that enforces the
//! expected last sequence, drops duplicate message ids within a window, stores an
//! atomic batch all or nothing, and loses messages, acks and connections, restarts,
//! and has a second writer append between or in the middle of the first one's group
//! commits. On the stream the writer's publishing decisions are the real ones
//! (`command_svc::atomic_publish`, which `JetStreamStorage` drives too), and so is its
//! fence handling (`Writer::commit_answering`: answer what landed, reload, decide
//! again); `stream_run`'s docs list the invariants the stream adds.
//!
//! It drives the real code: the write side's `recover_model` (snapshot choice,
//! replay, torn-tail cut, corruption refusal) and `Writer::commit_batch` (decide,
//! apply, idempotency, one write, one sync, watermark), and the read side's
//! `load_model` and `Tailer::step` (read what is new and durable, verify, apply,
//! publish). Snapshots go through the real snapshot files, in a scratch directory
//! (on tmpfs where there is one).
//!
//! After every step it checks:
//!
//! - every acknowledged event is durable: the synced log starts with the bytes of
//!   everything acknowledged, so a power cut cannot take one back;
//! - with accounts on, on both sides: for every asset, available + held over all
//!   users = opening balances + deposits − withdrawals; on the write side, every
//!   user's held = what their resting orders hold; an order or withdrawal is refused
//!   for want of funds only when what is available is less than what it needs;
//! - the read side never applies beyond what is durable (its position is within the
//!   synced bytes), and never skips a bad line;
//! - at every seq both sides reach, their digests agree (of the markets the read
//!   side holds: it sometimes holds only some, as `query-svc --markets`), and when both are at the
//!   head their books are equal; at a poll the read side catches up to the watermark;
//! - each answer is the event in the log at its seq; a retry gets its first answer,
//!   a conflicting reuse of a key gets 409;
//! - recovery never refuses a log that only a crash touched, restores exactly the
//!   model the writer had when nothing was lost, leaves a log that decodes to seq
//!   1..n with no torn tail, and publishes its end as the watermark;
//! - recovery always refuses a log with a flipped byte in a synced line that is
//!   followed by another line, naming that line, and leaves the log untouched.
//!
//! On the stream, after every step it checks:
//!
//! - the stream holds seqs 1..n, each line at its seq under its message id
//!   (`<seq>-<crc>-<writer>`), none twice, every line a valid event;
//! - every acknowledged event is in the stream at the seq its answer names, as it was
//!   answered (the answer is that event); no seq is acknowledged twice, to either
//!   writer, except to a key's retry, which gets the first answer again; a
//!   conflicting reuse of a key gets 409;
//! - a commit answers every command exactly once; 503 only when the writer gave up
//!   (fail-stop), and that only after a fault fired or while the server was down;
//! - after recovery a writer is at the stream's end, with exactly the model a killed
//!   writer had when nothing was appended after it; both writers' digests agree at
//!   every seq (one history);
//! - the read side never applies what the stream has not stored, agrees with the
//!   write side's digest at every seq both reach and with a writer's book at its
//!   head, and catches up at a poll; at the end a read side rebuilt from genesis too.

pub mod disk;
pub mod rng;
pub mod stream;
mod stream_run;

pub use stream_run::run_stream_seed;

use command_svc::book::Book;
use command_svc::command::{Command, OrderOptions, Rejection};
use command_svc::model::WriteModel;
use command_svc::storage::OpenError;
use command_svc::writer::{FsyncMode, Outcome, Writer, WriterOptions};
use disk::{Disk, Fault, WriterDisk};
use query_svc::QueryState;
use query_svc::history::Archive;
use query_svc::tailer::{StepError, Tailer, TailerSetup};
use rng::Rng;
use shared_events::{BookState, Envelope, LogCursor, ScanError, Side, Stp, TimeInForce};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Steps of one simulated run.
pub const STEPS_PER_SEED: u64 = 200;
/// Most commands in one group commit.
pub const BATCH_COMMANDS_MAX: u64 = 8;
/// Chance, in percent, that a commit has a fault armed.
pub const FAULT_PERCENT: u64 = 8;
/// Chance, in percent, that a command is a retry of an earlier keyed one.
pub const RETRY_PERCENT: u64 = 12;
/// Chance, in percent, that a retry changes the request (a conflicting key reuse).
pub const CONFLICT_PERCENT: u64 = 25;
/// Chance, in percent, that a new command carries an idempotency key.
pub const KEYED_PERCENT: u64 = 30;
/// The read side polls every this many steps (its fallback when notifications are lost).
pub const POLL_EVERY_STEPS: u64 = 5;
/// Tailer steps a poll may take to catch up (a watermark read can be torn).
pub const CATCH_UP_TRIES_MAX: u32 = 16;
/// Most simulated microseconds between two steps.
pub const CLOCK_STEP_US_MAX: u64 = 2_000;
/// Idempotency keys remembered: more than one run makes, so a retry always finds
/// its key.
pub const KEYS_KEPT: usize = 10_000;
/// Steps kept in a failure's trace.
pub const TRACE_STEPS: usize = 24;
/// Traders and prices of the workload: few, so that orders match and cancels hit.
const USERS: &[&str] = &["alice", "bob", "carol", "dave"];
const PRICE_LOW: u64 = 95;
const PRICE_HIGH: u64 = 106;
const QTY_MAX: u64 = 20;
/// The simulated clock starts here (2026-01-01, microseconds).
const CLOCK_START_US: u64 = 1_767_225_600_000_000;
/// Each market's digest of a write-side book, in its markets' order.
/// Each market's digest, in genesis order, then the accounts' (0 with accounts off).
fn market_digests(book: &Book) -> Vec<u64> {
    (book.market_digests().map(|(_, d)| d))
        .chain([book.accounts_digest()])
        .collect()
}

/// The genesis book: the shipped `init.txt`.
const GENESIS: &str = include_str!("../../init.txt");
/// The genesis with accounts on: the shipped `init-accounts.txt`.
const FUNDED_GENESIS: &str = include_str!("../../init-accounts.txt");

/// A seed's genesis: odd seeds run with accounts on (`init-accounts.txt`).
pub(crate) fn genesis_of(seed: u64) -> &'static str {
    if seed % 2 == 1 {
        FUNDED_GENESIS
    } else {
        GENESIS
    }
}

/// The read side's accounts' conservation: for every asset, available + held over
/// all users = opening balances + deposits − withdrawals, the read side's own counts.
pub(crate) fn check_read_accounts(
    model: &query_svc::projection::ReadModel,
    genesis: &BookState,
) -> Result<(), String> {
    let Some(accounts) = &model.accounts else {
        return Ok(());
    };
    let opening = genesis.opening_balances()?.unwrap_or_default();
    for (asset, t) in accounts.totals() {
        let paid_in: u128 = (opening.iter())
            .filter(|(_, a, _)| *a == asset)
            .map(|(_, _, b)| u128::from(b.available + b.held))
            .sum::<u128>()
            + t.deposited
            - t.withdrawn;
        if u128::from(t.available) + u128::from(t.held) != paid_in {
            return Err(format!(
                "at seq {} the read side's {asset} is not conserved: {} available + {} held, {paid_in} paid in",
                model.seq, t.available, t.held
            ));
        }
    }
    Ok(())
}

/// What a run does at a step, with its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Batch,
    Poll,
    WriterCrash,
    PowerCut,
    ReaderRestart,
    WriterSnapshot,
    ReaderSnapshot,
    Corrupt,
}

const ACTIONS: &[(Action, u64)] = &[
    (Action::Batch, 60),
    (Action::Poll, 8),
    (Action::WriterCrash, 4),
    (Action::PowerCut, 4),
    (Action::ReaderRestart, 3),
    (Action::WriterSnapshot, 3),
    (Action::ReaderSnapshot, 3),
    (Action::Corrupt, 3),
];

/// What a run went through (summed over runs for the report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub steps: u64,
    pub batches: u64,
    /// Events acknowledged to a client.
    pub events_acked: u64,
    pub retries_answered: u64,
    pub faults_fired: u64,
    pub writer_restarts: u64,
    pub power_cuts: u64,
    /// Recoveries that cut off a torn tail.
    pub torn_tails_cut: u64,
    /// Corrupt logs that recovery refused, as it must.
    pub corruptions_refused: u64,
    pub snapshots_written: u64,
    pub reader_restarts: u64,
    /// Read sides started holding only some markets (`--markets`).
    pub partial_readers: u64,
    /// Runs with accounts on (`init-accounts.txt`).
    pub funded_runs: u64,
    /// Deposits and withdrawals acknowledged.
    pub transfers_acked: u64,
    /// On the stream: publishing attempts refused as stale, or as duplicates.
    pub refused_stale: u64,
    pub refused_duplicate: u64,
    /// Answers that left the outcome unclear (no answer, an incomplete batch).
    pub unclear_answers: u64,
    /// Refusals read back, and those that found another writer's messages.
    pub read_backs: u64,
    pub fences: u64,
    /// Writers that gave up on an unclear commit or a broken answer (503, exit).
    pub fail_stops: u64,
    /// Group commits of the second writer, and those run inside another commit.
    pub second_writer_batches: u64,
    pub interlopers: u64,
    pub stream_restarts: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.steps += o.steps;
        self.batches += o.batches;
        self.events_acked += o.events_acked;
        self.retries_answered += o.retries_answered;
        self.faults_fired += o.faults_fired;
        self.writer_restarts += o.writer_restarts;
        self.power_cuts += o.power_cuts;
        self.torn_tails_cut += o.torn_tails_cut;
        self.corruptions_refused += o.corruptions_refused;
        self.snapshots_written += o.snapshots_written;
        self.reader_restarts += o.reader_restarts;
        self.partial_readers += o.partial_readers;
        self.funded_runs += o.funded_runs;
        self.transfers_acked += o.transfers_acked;
        self.refused_stale += o.refused_stale;
        self.refused_duplicate += o.refused_duplicate;
        self.unclear_answers += o.unclear_answers;
        self.read_backs += o.read_backs;
        self.fences += o.fences;
        self.fail_stops += o.fail_stops;
        self.second_writer_batches += o.second_writer_batches;
        self.interlopers += o.interlopers;
        self.stream_restarts += o.stream_restarts;
    }
}

/// A broken invariant: the seed that breaks it, where, and what led there.
#[derive(Debug, Clone, thiserror::Error)]
#[error("seed {seed} failed at step {step}: {message}\nlast steps:\n  {}", trace.join("\n  "))]
pub struct Failure {
    pub seed: u64,
    pub step: u64,
    pub message: String,
    /// The last [`TRACE_STEPS`] steps, oldest first.
    pub trace: Vec<String>,
}

/// Which log a run simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimLog {
    /// The file log on the simulated disk ([`disk`]): [`run_seed`].
    Disk,
    /// The JetStream stream, simulated ([`stream`]): [`run_stream_seed`].
    Stream,
}

impl SimLog {
    /// The logs `SIM_LOG` names: `disk`, `stream`, or `both` (the default).
    pub fn from_env() -> Result<Vec<SimLog>, String> {
        match std::env::var("SIM_LOG").as_deref() {
            Err(_) | Ok("" | "both") => Ok(vec![SimLog::Disk, SimLog::Stream]),
            Ok("disk") => Ok(vec![SimLog::Disk]),
            Ok("stream") => Ok(vec![SimLog::Stream]),
            Ok(other) => Err(format!("SIM_LOG={other:?}: expected disk, stream or both")),
        }
    }

    /// Its name in `SIM_LOG`.
    pub fn name(self) -> &'static str {
        match self {
            SimLog::Disk => "disk",
            SimLog::Stream => "stream",
        }
    }

    /// Runs `seed` on this log.
    pub fn run(self, seed: u64) -> Result<Stats, Failure> {
        match self {
            SimLog::Disk => run_seed(seed),
            SimLog::Stream => run_stream_seed(seed),
        }
    }
}

/// Runs one seed through [`STEPS_PER_SEED`] steps, checking every invariant after
/// each; then a final power cut and recovery.
pub fn run_seed(seed: u64) -> Result<Stats, Failure> {
    let mut world = World::new(seed).map_err(|message| Failure {
        seed,
        step: 0,
        message,
        trace: Vec::new(),
    })?;
    let result = world.run();
    let trace = world.trace.iter().cloned().collect();
    result.map(|()| world.stats).map_err(|message| Failure {
        seed,
        step: world.step,
        message,
        trace,
    })
}

/// A scratch directory for one run's snapshot files, removed when dropped.
pub(crate) struct ScratchDir(pub(crate) PathBuf);

impl ScratchDir {
    pub(crate) fn new(seed: u64) -> Result<Self, String> {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("foldbook-sim-{}-{seed}-{run}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Line boundaries of a log: (start, end) of each complete line, newline included.
fn lines(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    out
}

/// The complete, valid lines at the front of `bytes` (which start at `cursor`).
fn decode(bytes: &[u8], cursor: LogCursor) -> Result<Vec<Envelope>, String> {
    let mut cursor = cursor;
    let mut events = Vec::new();
    cursor
        .decode_lines(bytes, |env, _| events.push(env))
        .map_err(|bad| format!("a line the writer just wrote does not decode: {bad}"))?;
    Ok(events)
}

/// The command's key, if it has one.
pub(crate) fn key_of(cmd: &Command) -> Option<&str> {
    command_svc::idempotency::key_of_command(cmd)
}

/// Whether `outcome` is what `env` records, for a command `cmd`.
pub(crate) fn outcome_matches(
    outcome: &Outcome,
    env: &Envelope,
    cmd: &Command,
) -> Result<(), String> {
    // The answer is the logged event's, and the event is what the command asked for.
    let ok = *outcome == Outcome::new(env, true)
        && command_svc::idempotency::same_request(cmd, &env.event)
        && key_of(cmd) == env.event.idempotency_key();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the answer {outcome:?} to {cmd:?} is not the logged event {env:?}"
        ))
    }
}

/// The commands of a run: new orders and cancels, and retries of earlier keyed
/// commands (some changed: a conflicting reuse of the key).
#[derive(Debug, Default)]
pub(crate) struct Workload {
    /// Commands sent with a key, for retries.
    keyed: Vec<Command>,
    keys_made: u64,
}

impl Workload {
    /// A new command against `book` (cancels pick its resting orders), or a retry of
    /// an earlier keyed one.
    pub(crate) fn command(&mut self, rng: &mut Rng, book: &Book) -> Command {
        if !self.keyed.is_empty() && rng.percent(RETRY_PERCENT) {
            let mut cmd = rng.pick(&self.keyed).clone();
            if rng.percent(CONFLICT_PERCENT) {
                match &mut cmd {
                    Command::Place { price, .. } => *price = PRICE_HIGH + 1,
                    Command::Cancel { order_id, .. } | Command::Amend { order_id, .. } => {
                        *order_id += 1
                    }
                    Command::CancelAll { market, .. } => *market = None,
                    Command::Deposit { amount, .. } | Command::Withdraw { amount, .. } => {
                        *amount += 1
                    }
                }
            }
            return cmd;
        }
        let idempotency_key = rng.percent(KEYED_PERCENT).then(|| {
            self.keys_made += 1;
            format!("key-{}", self.keys_made)
        });
        let user = (*rng.pick(USERS)).to_owned();
        let cmd = if let Some(accounts) = book.accounts()
            && rng.percent(12)
        {
            // With accounts on: money in and out, of every asset, now and then more
            // than is available (422, nothing written).
            let asset = *rng.pick(accounts.assets());
            let amount = rng.range(1, 5_000);
            if rng.percent(50) {
                Command::Deposit {
                    user,
                    asset,
                    amount,
                    idempotency_key,
                }
            } else {
                Command::Withdraw {
                    user,
                    asset,
                    amount,
                    idempotency_key,
                }
            }
        } else if rng.percent(75) {
            // Every market of the genesis (the shipped init.txt has several), the
            // default most often.
            let markets = book.markets();
            let market = if rng.percent(50) {
                markets[0].symbol
            } else {
                rng.pick(markets).symbol
            };
            let side = if rng.percent(50) {
                Side::Buy
            } else {
                Side::Sell
            };
            let qty = rng.range(1, QTY_MAX);
            // Every order type: mostly plain limit orders.
            let stp = match rng.below(8) {
                0 => Stp::CancelTaker,
                1 => Stp::CancelMaker,
                2 => Stp::CancelBoth,
                _ => Stp::None,
            };
            let (price, options) = match rng.below(12) {
                0 => (
                    rng.range(PRICE_LOW, PRICE_HIGH),
                    OrderOptions {
                        tif: TimeInForce::Ioc,
                        stp,
                        ..OrderOptions::default()
                    },
                ),
                1 => (
                    rng.range(PRICE_LOW, PRICE_HIGH),
                    OrderOptions {
                        tif: TimeInForce::Fok,
                        stp,
                        ..OrderOptions::default()
                    },
                ),
                2 => (
                    rng.range(PRICE_LOW, PRICE_HIGH),
                    OrderOptions {
                        post_only: true,
                        ..OrderOptions::default()
                    },
                ),
                3 => {
                    let (price, max_cost) = match side {
                        Side::Buy => (
                            shared_events::domain::PRICE_MAX,
                            Some(qty * rng.range(PRICE_LOW, 2 * PRICE_HIGH)),
                        ),
                        Side::Sell => (shared_events::domain::PRICE_MIN, None),
                    };
                    (
                        price,
                        OrderOptions {
                            market: true,
                            max_cost,
                            stp,
                            ..OrderOptions::default()
                        },
                    )
                }
                _ => (
                    rng.range(PRICE_LOW, PRICE_HIGH),
                    OrderOptions {
                        stp,
                        ..OrderOptions::default()
                    },
                ),
            };
            Command::Place {
                options,
                market,
                user,
                side,
                price,
                qty,
                idempotency_key,
            }
        } else if rng.percent(20) {
            let market = rng.percent(50).then(|| rng.pick(book.markets()).symbol);
            Command::CancelAll {
                user,
                market,
                idempotency_key,
            }
        } else if rng.percent(35) {
            let resting = book.to_state().orders;
            let (order_id, owner) = if !resting.is_empty() && rng.percent(90) {
                let o = rng.pick(&resting);
                (o.id, o.user.clone())
            } else {
                (rng.range(1, book.next_order_id() + 1), user.clone())
            };
            Command::Amend {
                user: if rng.percent(85) { owner } else { user },
                order_id,
                qty: rng.range(1, QTY_MAX),
                price: rng.percent(50).then(|| rng.range(PRICE_LOW, PRICE_HIGH)),
                idempotency_key,
            }
        } else {
            let resting = book.to_state().orders;
            let (order_id, owner) = if !resting.is_empty() && rng.percent(90) {
                let o = rng.pick(&resting);
                (o.id, o.user.clone())
            } else {
                (rng.range(1, book.next_order_id() + 1), user.clone())
            };
            Command::Cancel {
                user: if rng.percent(85) { owner } else { user },
                order_id,
                idempotency_key,
            }
        };
        if key_of(&cmd).is_some() {
            self.keyed.push(cmd.clone());
        }
        cmd
    }
}

struct World {
    step: u64,
    rng: Rng,
    disk: Disk,
    /// The simulated clock, in microseconds since the epoch.
    clock: Arc<AtomicU64>,
    genesis: BookState,
    snapshots: ScratchDir,
    /// The running writer; `None` while its process is down.
    writer: Option<Writer<WriterDisk>>,
    /// The running tailer; `None` while the read side's process is down.
    tailer: Option<Tailer>,
    /// The log's bytes through the last acknowledged event, as they were then.
    acked: Vec<u8>,
    /// The write side's digest after each seq it committed or recovered to.
    /// Each market's digest on the write side, by seq (markets in genesis order).
    write_digests: BTreeMap<u64, Vec<u64>>,
    /// The first acknowledged answer for each idempotency key, with its command.
    answers: HashMap<String, (Command, Outcome)>,
    workload: Workload,
    /// Log offset of the newest write-side snapshot (recovery replays from at most here).
    writer_snapshot_offset: u64,
    /// A byte flipped on purpose: (line start, line end). The read side may stop at it.
    corrupt_line: Option<(usize, usize)>,
    trace: VecDeque<String>,
    stats: Stats,
}

impl World {
    fn new(seed: u64) -> Result<Self, String> {
        let genesis = BookState::parse(genesis_of(seed))?;
        let funded = genesis.accounts.is_some();
        let mut rng = Rng::new(seed);
        let disk = Disk::new(rng.next_u64());
        let mut write_digests = BTreeMap::new();
        write_digests.insert(0, market_digests(&Book::from_state(&genesis)));
        Ok(World {
            step: 0,
            rng,
            disk,
            clock: Arc::new(AtomicU64::new(CLOCK_START_US)),
            genesis,
            snapshots: ScratchDir::new(seed)?,
            writer: None,
            tailer: None,
            acked: Vec::new(),
            write_digests,
            answers: HashMap::new(),
            workload: Workload::default(),
            writer_snapshot_offset: 0,
            corrupt_line: None,
            trace: VecDeque::new(),
            stats: Stats {
                funded_runs: u64::from(funded),
                ..Stats::default()
            },
        })
    }

    fn note(&mut self, what: String) {
        if self.trace.len() == TRACE_STEPS {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("step {}: {what}", self.step));
    }

    fn now_us(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    fn run(&mut self) -> Result<(), String> {
        self.start_writer(None)?;
        self.start_reader()?;
        let weights: Vec<u64> = ACTIONS.iter().map(|(_, w)| *w).collect();
        for step in 1..=STEPS_PER_SEED {
            self.step = step;
            self.stats.steps += 1;
            self.disk.set_step(step);
            let tick = self.rng.range(1, CLOCK_STEP_US_MAX);
            self.clock.fetch_add(tick, Ordering::Relaxed);
            // A writer that failed exits; it is restarted (by systemd, say) at once.
            if self.writer.is_none() {
                self.start_writer(None)?;
            }
            if self.tailer.is_none() {
                self.start_reader()?;
            }
            if self.disk.take_due_notification() {
                self.tail("notified")?;
            }
            if step % POLL_EVERY_STEPS == 0 {
                self.poll()?;
            }
            match ACTIONS[self.rng.weighted(&weights)].0 {
                Action::Batch => self.batch()?,
                Action::Poll => self.poll()?,
                Action::WriterCrash => {
                    self.note("writer killed".into());
                    self.crash_writer()?;
                }
                Action::PowerCut => self.power_cut()?,
                Action::ReaderRestart => {
                    self.note("read side restarted".into());
                    self.start_reader()?;
                    self.tail("after restart")?;
                }
                Action::WriterSnapshot => self.writer_snapshot()?,
                Action::ReaderSnapshot => self.reader_snapshot(),
                Action::Corrupt => self.corrupt()?,
            }
            self.check_acked_durable()?;
            self.check_accounts()?;
        }
        // The end: the read side catches up, then the power goes once more.
        self.step += 1;
        self.poll()?;
        self.power_cut()?;
        self.poll()?;
        self.check_log_decodes()
    }

    /// With accounts on, both sides' accounts keep their invariants.
    fn check_accounts(&self) -> Result<(), String> {
        if let Some(writer) = &self.writer {
            writer.model().book.check_accounts()?;
        }
        if let Some(tailer) = &self.tailer {
            check_read_accounts(tailer.model(), &self.genesis)?;
        }
        Ok(())
    }

    /// Every acknowledged event is on the platter, byte for byte.
    fn check_acked_durable(&self) -> Result<(), String> {
        self.disk.durable_starts_with(&self.acked).map_err(|at| {
            format!(
                "acknowledged events are not durable: the synced log ({} bytes) differs from the acknowledged bytes ({}) at byte {at}",
                self.disk.durable_len(),
                self.acked.len()
            )
        })
    }

    /// The whole log decodes to seq 1..n without a torn tail, n the writer's head.
    fn check_log_decodes(&self) -> Result<(), String> {
        let current = self.disk.current();
        let report = shared_events::scan(&current[..], LogCursor::start(), |_, _| {})
            .map_err(|e| format!("the log does not decode: {e}"))?;
        if report.torn.is_some() || report.cursor.offset != current.len() as u64 {
            return Err(format!("the log has a torn tail: {:?}", report.torn));
        }
        if let Some(writer) = &self.writer {
            let (next_seq, offset) = writer.log_end();
            if (report.cursor.next_seq, report.cursor.offset) != (next_seq, offset) {
                return Err(format!(
                    "the log decodes to seq 1..{} ({} bytes), the writer is at seq {} ({offset} bytes)",
                    report.cursor.next_seq - 1,
                    report.cursor.offset,
                    next_seq - 1
                ));
            }
        }
        Ok(())
    }

    /// Starts the writer: recovery from the newest snapshot and the disk. `before` is
    /// the model of a writer that was killed in good health (nothing it did was lost):
    /// recovery must rebuild exactly it.
    fn start_writer(&mut self, before: Option<WriteModel>) -> Result<(), String> {
        self.stats.writer_restarts += 1;
        let mut storage = self.disk.writer();
        let (model, recovery) = command_svc::recover_model(
            &mut storage,
            "sim-disk",
            &self.genesis,
            &self.snapshots.0,
            KEYS_KEPT,
            self.now_us(),
        )
        .map_err(|e| format!("recovery refused a log that only crashes touched: {e}"))?;
        let head = recovery.cursor.next_seq - 1;
        self.note(format!(
            "writer recovered to seq {head}{}",
            recovery.torn.as_ref().map_or(String::new(), |t| format!(
                ", cut a torn tail of {} bytes",
                t.bytes
            ))
        ));
        if recovery.torn.is_some() {
            self.stats.torn_tails_cut += 1;
        }
        let len = self.disk.current_len();
        if len != recovery.cursor.offset {
            return Err(format!(
                "after recovery the log is {len} bytes, recovery says it ends at {}",
                recovery.cursor.offset
            ));
        }
        if !self.disk.all_synced() {
            return Err("recovery published a log it did not sync".into());
        }
        let mark = self.disk.watermark();
        if mark.map(|m| (m.seq, m.offset)) != Some((head, recovery.cursor.offset)) {
            return Err(format!(
                "after recovery to seq {head} the watermark is {mark:?}"
            ));
        }
        if let Some(before) = before
            && before != model
        {
            return Err(format!(
                "recovery rebuilt another model than the writer had (seq {head}; digests {} before, {} after)",
                before.book.digest(),
                model.book.digest()
            ));
        }
        self.record_digest(head, market_digests(&model.book))?;
        let clock = self.clock.clone();
        let options = WriterOptions {
            fsync: FsyncMode::Always,
            snapshots: None,
        };
        let writer = Writer::new(model, storage, recovery.cursor, options)
            .with_clock(Arc::new(move || clock.load(Ordering::Relaxed)));
        self.writer = Some(writer);
        Ok(())
    }

    /// Records (or checks) the write side's digest at `seq`.
    fn record_digest(&mut self, seq: u64, digests: Vec<u64>) -> Result<(), String> {
        match self.write_digests.insert(seq, digests.clone()) {
            Some(known) if known != digests => Err(format!(
                "the write side's digests at seq {seq} were {known:?}, now {digests:?}"
            )),
            _ => Ok(()),
        }
    }

    /// The write side's digest at `seq` of the markets `held` says (all of them for
    /// a read side holding every market), if known.
    fn write_digest(&self, seq: u64, held: &[bool]) -> Option<u64> {
        let digests = self.write_digests.get(&seq)?;
        // The accounts' digest (last) counts for a read side holding every market,
        // the one kind that keeps balances.
        let accounts = match held.iter().all(|h| *h) {
            true => *digests.last().expect("the accounts' digest"),
            false => 0,
        };
        Some(
            (digests.iter().zip(held))
                .filter(|(_, held)| **held)
                .fold(accounts, |sum, (d, _)| sum.wrapping_add(*d)),
        )
    }

    /// Kills the writer's process. A healthy writer's model must come back exactly.
    fn crash_writer(&mut self) -> Result<(), String> {
        let before = self.writer.take().map(|w| w.model().clone());
        self.start_writer(before)
    }

    /// The machine loses power: both processes die, the disk keeps what was synced.
    fn power_cut(&mut self) -> Result<(), String> {
        let before = self.writer.take().map(|w| w.model().clone());
        self.tailer = None;
        let cut = self.disk.power_cut();
        self.stats.power_cuts += 1;
        self.note(format!("power cut: {cut:?}"));
        self.check_acked_durable()?;
        // The read side may come back first, and see the old watermark and a torn tail.
        if self.rng.percent(50) {
            self.start_reader()?;
            self.tail("before the writer is back")?;
        }
        self.start_writer(before)?;
        self.check_log_decodes()?;
        if self.tailer.is_none() {
            self.start_reader()?;
        }
        Ok(())
    }

    /// Starts the read side: its newest usable snapshot (or genesis), then the tailer.
    fn start_reader(&mut self) -> Result<(), String> {
        self.stats.reader_restarts += 1;
        let mut source = self.disk.reader();
        let rebuild = self.rng.percent(10);
        // Mostly every market; sometimes some (`query-svc --markets`), which reads only
        // the head of the other markets' lines.
        let markets = self.genesis.markets.len();
        let held: Arc<[bool]> = if markets > 1 && self.rng.percent(30) {
            let mut held: Vec<bool> = (0..markets).map(|_| self.rng.percent(50)).collect();
            let keep = self.rng.below(markets as u64) as usize;
            held[keep] = true;
            if held.iter().any(|h| !h) {
                self.stats.partial_readers += 1;
            }
            held.into()
        } else {
            vec![true; markets].into()
        };
        let (model, cursor) = query_svc::load_model_holding(
            &self.genesis,
            &self.snapshots.0,
            &mut source,
            rebuild,
            &held,
        );
        if model.seq + 1 != cursor.next_seq {
            return Err(format!(
                "the read side starts at seq {} with a cursor for seq {}",
                model.seq, cursor.next_seq
            ));
        }
        if let Some(digest) = self.write_digest(model.seq, &model.held)
            && digest != model.digest()
        {
            return Err(format!(
                "the read side's snapshot at seq {} has digest {}, the write side had {digest}",
                model.seq,
                model.digest()
            ));
        }
        if cursor.offset > self.disk.durable_len() {
            return Err(format!(
                "the read side starts at byte {} beyond the durable {}",
                cursor.offset,
                self.disk.durable_len()
            ));
        }
        let archive = Archive {
            held: model.held.clone(),
            genesis: self.genesis.clone(),
            log: Box::new(PathBuf::from("sim-disk")),
            snapshots: self.snapshots.0.clone(),
        };
        let state = Arc::new(QueryState::new(&model, archive, cursor));
        let setup = TailerSetup {
            source: Box::new(source),
            model,
            cursor,
            snapshots: None,
        };
        self.tailer = Some(Tailer::new(setup, state));
        Ok(())
    }

    /// The tailer reads what is new and durable until it has nothing more, then the
    /// read-side invariants are checked.
    fn tail(&mut self, why: &str) -> Result<(), String> {
        let Some(tailer) = self.tailer.as_mut() else {
            return Ok(());
        };
        let before = tailer.model().seq;
        let stuck = loop {
            match tailer.step() {
                Ok(true) => continue,
                Ok(false) | Err(StepError::Waiting(_)) => break None,
                Err(StepError::Stuck(message)) => break Some(message),
            }
        };
        let (seq, cursor, digest) = (tailer.model().seq, tailer.cursor(), tailer.model().digest());
        let held = tailer.model().held.clone();
        if seq != before {
            self.note(format!(
                "read side applied seq {}..={seq} ({why})",
                before + 1
            ));
        }
        if let Some(message) = stuck {
            match self.corrupt_line {
                Some((start, _)) if cursor.offset <= start as u64 => {}
                _ => return Err(format!("the read side stopped applying: {message}")),
            }
        }
        if let Some((start, end)) = self.corrupt_line
            && cursor.offset > start as u64
            && cursor.offset < end as u64
        {
            return Err("the read side applied part of a corrupt line".into());
        }
        if cursor.next_seq != seq + 1 {
            return Err(format!(
                "the read side is at seq {seq} with a cursor for seq {}",
                cursor.next_seq
            ));
        }
        let durable = self.disk.durable_len();
        if cursor.offset > durable {
            return Err(format!(
                "the read side applied up to byte {} (seq {seq}), beyond the durable {durable} bytes",
                cursor.offset
            ));
        }
        if let Some(expected) = self.write_digest(seq, &held)
            && expected != digest
        {
            return Err(format!(
                "at seq {seq} the read side's digest is {digest}, the write side's was {expected}"
            ));
        }
        if let Some(writer) = &self.writer
            && writer.log_end().0 == seq + 1
        {
            let book = &writer.model().book;
            let read = self.tailer.as_ref().expect("tailing").model();
            // A read side holding some markets has only their orders.
            let mut write = book.to_state();
            let held_markets: Vec<shared_events::Symbol> = (write.markets.iter().zip(held.iter()))
                .filter(|(_, held)| **held)
                .map(|(m, _)| m.symbol)
                .collect();
            write.orders.retain(|o| held_markets.contains(&o.market));
            if held.iter().any(|h| !h) {
                write.accounts = None;
            }
            if read.to_state(book.next_order_id()) != write {
                return Err(format!(
                    "at seq {seq} the read side's book differs from the write side's"
                ));
            }
        }
        Ok(())
    }

    /// The read side's poll: it must catch up with the watermark.
    fn poll(&mut self) -> Result<(), String> {
        for _ in 0..CATCH_UP_TRIES_MAX {
            self.tail("poll")?;
            let (Some(tailer), Some(mark)) = (&self.tailer, self.disk.watermark()) else {
                return Ok(());
            };
            if tailer.model().seq >= mark.seq || self.corrupt_line.is_some() {
                return Ok(());
            }
        }
        Err(format!(
            "the read side did not catch up with the watermark ({:?}) in {CATCH_UP_TRIES_MAX} polls",
            self.disk.watermark()
        ))
    }

    /// A new command, or a retry of an earlier keyed one.
    fn command(&mut self) -> Command {
        let book = &self.writer.as_ref().expect("a running writer").model().book;
        self.workload.command(&mut self.rng, book)
    }

    /// One group commit through the real writer, perhaps with a fault armed.
    fn batch(&mut self) -> Result<(), String> {
        let n = self.rng.range(1, BATCH_COMMANDS_MAX);
        let commands: Vec<Command> = (0..n).map(|_| self.command()).collect();
        let fault = self.rng.percent(FAULT_PERCENT).then(|| {
            *self.rng.pick(&[
                Fault::FailWrite,
                Fault::TearWrite,
                Fault::FailSync,
                Fault::FailPublish,
            ])
        });
        if let Some(fault) = fault {
            self.disk.arm(fault);
        }
        let writer = self.writer.as_mut().expect("a running writer");
        let (next_seq, old_len) = writer.log_end();
        let head = next_seq - 1;
        self.stats.batches += 1;
        match writer.commit_batch(commands.clone()) {
            Ok(answers) => {
                let fired = fault.is_some() && !self.disk.disarm();
                if fired {
                    return Err(format!("the commit succeeded although {fault:?} fired"));
                }
                self.check_answers(&commands, &answers, head, old_len as usize)
            }
            Err(reason) => {
                self.stats.faults_fired += 1;
                self.note(format!(
                    "batch of {n} failed ({fault:?}): {reason}; the writer exits"
                ));
                if fault.is_none() || self.disk.disarm() {
                    return Err(format!("a commit failed without a fault: {reason}"));
                }
                // The process is gone; the read side keeps running meanwhile.
                self.writer = None;
                if self.rng.percent(50) {
                    self.tail("while the writer is down")?;
                }
                if self.rng.percent(30) {
                    self.power_cut()
                } else {
                    self.start_writer(None)
                }
            }
        }
    }

    /// The answers of a committed batch against the log and the earlier answers.
    ///
    /// One function: every answer is checked against the same log prefix and the
    /// same record of earlier answers.
    fn check_answers(
        &mut self,
        commands: &[Command],
        answers: &[Result<Outcome, Rejection>],
        head: u64,
        old_len: usize,
    ) -> Result<(), String> {
        if answers.len() != commands.len() {
            return Err(format!(
                "{} answers to {} commands",
                answers.len(),
                commands.len()
            ));
        }
        let writer = self.writer.as_ref().expect("a running writer");
        let (next_seq, new_len) = writer.log_end();
        let current = self.disk.current();
        if current.len() as u64 != new_len || !self.disk.all_synced() {
            return Err("a committed batch is not exactly the synced end of the log".into());
        }
        let start = LogCursor {
            offset: old_len as u64,
            lines: head,
            next_seq: head + 1,
        };
        let events = decode(&current[old_len..], start)?;
        if events.len() as u64 != next_seq - 1 - head {
            return Err(format!(
                "the batch wrote {} lines for seqs {}..{next_seq}",
                events.len(),
                head + 1
            ));
        }
        let mut expected_seq = head + 1;
        let mut firsts: Vec<(String, Command, Outcome)> = Vec::new();
        for (cmd, answer) in commands.iter().zip(answers) {
            let known = key_of(cmd).and_then(|k| {
                self.answers
                    .get(k)
                    .map(|(c, o)| (c, o))
                    .or_else(|| firsts.iter().find(|f| f.0 == k).map(|f| (&f.1, &f.2)))
            });
            match (answer, known) {
                // A key seen before: the first answer again, or 409 for another request.
                (Ok(outcome), Some((first_cmd, _))) if !same_request(cmd, first_cmd) => {
                    return Err(format!(
                        "{cmd:?} reuses the key of {first_cmd:?}: it must get 409, it got {outcome:?}"
                    ));
                }
                (Ok(outcome), Some((first_cmd, first))) => {
                    if outcome != first {
                        return Err(format!(
                            "a retry of {cmd:?} got {outcome:?}, the first answer was {first:?} to {first_cmd:?}"
                        ));
                    }
                    self.stats.retries_answered += 1;
                }
                (Err(Rejection::KeyReused), Some((first_cmd, _))) => {
                    if same_request(cmd, first_cmd) {
                        return Err(format!("a retry of {cmd:?} got 409"));
                    }
                }
                (Err(r), Some(_)) => {
                    return Err(format!("a keyed command {cmd:?} was rejected: {r}"));
                }
                (Ok(outcome), None) if outcome.seq() == expected_seq => {
                    let env = &events[(expected_seq - head - 1) as usize];
                    outcome_matches(outcome, env, cmd)?;
                    expected_seq += 1;
                    if cmd.is_transfer() {
                        self.stats.transfers_acked += 1;
                    }
                    if let Some(k) = key_of(cmd) {
                        firsts.push((k.to_owned(), cmd.clone(), outcome.clone()));
                    }
                }
                // A key whose first attempt failed but was written anyway.
                (Ok(outcome), None) if key_of(cmd).is_some() && outcome.seq() <= head => {}
                (Err(Rejection::KeyReused), None) if key_of(cmd).is_some() => {}
                (Err(Rejection::NotResting(_) | Rejection::NotOwner(_)), None)
                    if matches!(cmd, Command::Cancel { .. } | Command::Amend { .. }) => {}
                // An order or amend that would change nothing: 409, nothing written.
                (Err(Rejection::Unchanged(_)), None) => {}
                // With accounts on, an order or withdrawal the money does not cover
                // (the property tests check that it really does not).
                (
                    Err(Rejection::InsufficientFunds {
                        needed, available, ..
                    }),
                    None,
                ) if self.genesis.accounts.is_some()
                    && matches!(
                        cmd,
                        Command::Place { .. } | Command::Withdraw { .. } | Command::Amend { .. }
                    )
                    && available < needed => {}
                (answer, None) => {
                    return Err(format!("unexpected answer {answer:?} to {cmd:?}"));
                }
            }
        }
        if expected_seq != next_seq {
            return Err(format!(
                "the batch logged seqs {}..{next_seq} but answered up to {}",
                head + 1,
                expected_seq - 1
            ));
        }
        for (key, cmd, outcome) in firsts {
            self.answers.entry(key).or_insert((cmd, outcome));
        }
        self.stats.events_acked += next_seq - 1 - head;
        self.acked = current;
        let digests = market_digests(&writer.model().book);
        self.record_digest(next_seq - 1, digests)?;
        self.note(format!(
            "batch of {} acknowledged, seq {}..{}",
            commands.len(),
            head + 1,
            next_seq - 1
        ));
        Ok(())
    }

    fn writer_snapshot(&mut self) -> Result<(), String> {
        let writer = self.writer.as_ref().expect("a running writer");
        let checkpoint = writer.checkpoint();
        checkpoint
            .write(&self.snapshots.0)
            .map_err(|e| format!("writing a write-side snapshot: {e}"))?;
        self.writer_snapshot_offset = checkpoint.log_offset;
        self.stats.snapshots_written += 1;
        self.note(format!("write-side snapshot at seq {}", checkpoint.seq));
        Ok(())
    }

    fn reader_snapshot(&mut self) {
        let Some(tailer) = &self.tailer else {
            return;
        };
        let (seq, offset) = (tailer.model().seq, tailer.cursor().offset);
        let body = tailer.model().encode();
        query_svc::checkpoint::write(&self.snapshots.0, seq, offset, body);
        self.stats.snapshots_written += 1;
        self.note(format!("read-side snapshot at seq {seq}"));
    }

    /// Flips a byte in a synced line that another line follows, after the newest
    /// write-side snapshot (so recovery must read it). The read side must stop
    /// before it, recovery must refuse naming it and leave the log untouched; then
    /// the log is restored from a copy and everything goes on.
    fn corrupt(&mut self) -> Result<(), String> {
        let durable = self.disk.durable();
        let candidates: Vec<(usize, usize)> = {
            let all = lines(&durable);
            let followed = all.len().saturating_sub(1);
            all.into_iter()
                .take(followed)
                .filter(|(start, _)| *start as u64 >= self.writer_snapshot_offset)
                .collect()
        };
        if candidates.is_empty() {
            return Ok(());
        }
        let (start, end) = *self.rng.pick(&candidates);
        let at = self.rng.range(start as u64, end as u64 - 1) as usize;
        let xor = self.rng.range(1, 255) as u8;
        let old = self.disk.corrupt(at, xor);
        self.corrupt_line = Some((start, end));
        self.note(format!(
            "flipped byte {at} (line at {start}..{end}) by {xor:#04x}"
        ));
        self.tail("after corruption")?;
        let damaged = self.disk.current();
        let before = self.writer.take().map(|w| w.model().clone());
        let refused = command_svc::recover_model(
            &mut self.disk.writer(),
            "sim-disk",
            &self.genesis,
            &self.snapshots.0,
            KEYS_KEPT,
            self.now_us(),
        );
        match refused {
            Err(OpenError::Scan {
                source: ScanError::Corrupt(bad),
                ..
            }) if bad.offset == start as u64 => {}
            Err(e) => return Err(format!("recovery of a corrupt line at {start} said: {e}")),
            Ok((_, recovery)) => {
                return Err(format!(
                    "recovery accepted a log with a flipped byte at {at} in the line at {start}..{end} (torn tail: {:?})",
                    recovery.torn
                ));
            }
        }
        if self.disk.current() != damaged {
            return Err("recovery changed a log it refused".into());
        }
        self.stats.corruptions_refused += 1;
        self.disk.restore(at, old);
        self.corrupt_line = None;
        self.note("log restored from a copy".into());
        self.start_writer(before)?;
        self.check_log_decodes()?;
        self.tail("after the restore")
    }
}

/// Whether two commands are the same request (what a key's retry must repeat).
pub(crate) fn same_request(a: &Command, b: &Command) -> bool {
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_exactly() {
        let first = run_seed(42).unwrap();
        let second = run_seed(42).unwrap();
        assert_eq!(first, second);
        assert!(first.events_acked > 0 && first.steps == STEPS_PER_SEED);
    }

    #[test]
    fn line_boundaries() {
        assert_eq!(lines(b"ab\nc\nd"), vec![(0, 3), (3, 5)]);
    }
}
