//! Follows the log and folds it into the read model. One thread reads only complete
//! lines past its cursor and never past the writer's durable watermark (the
//! `<log>.durable` file, or the end of what a JetStream stream delivered), so it
//! never shows an event a crash could still take back; it checks crc and seq
//! continuity, applies each event, and then publishes a new immutable
//! [`BookView`](crate::projection::BookView). It also writes the read side's
//! snapshots. It wakes on change notifications (inotify through the `notify` crate
//! for a file, each arriving message for a stream) and also polls every
//! [`POLL_INTERVAL`], because inotify can drop or coalesce events. On a bad line or a
//! misfit event it stops applying, says so in `/health` and the log, and retries at
//! each poll: it never skips an event.
//!
//! The log comes through a [`LogSource`] (the file, a JetStream stream, or the
//! simulator's disk). A source may leave out runs of lines of markets this side does
//! not hold (a filtered stream, [`LogSource::left_out`]): the tailer moves past each
//! by seq and offset without reading it, as one step of the fold, so the cursor is
//! always at a line's start and a snapshot's offset is always right. And
//! [`Tailer::step`] is one round of reading, verifying, applying and publishing,
//! callable without the thread.

use crate::QueryState;
use crate::checkpoint::{self, SnapshotOptions};
use crate::history::LineEvent;
use crate::projection::ReadModel;
use crate::source::LogSource;
use shared_events::snapshot::Checkpointer;
use shared_events::source::read_full_at;
use shared_events::state::MarketSpec;
use shared_events::{Envelope, LineError, LineHead, LogCursor, Watermark};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest wait between two looks at the log when no change notification arrives.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Most bytes read from the log per batch: bounds memory and the time between snapshots.
pub const READ_BYTES_MAX: usize = 4 << 20;
/// A backlog at least this large is caught up with decoding on a second thread.
pub const PIPELINE_BYTES_MIN: usize = 1 << 20;
/// Most bytes one pipelined catch-up step reads (then the loop looks at the stop
/// flag and the snapshot schedule).
pub const PIPELINE_BYTES_MAX: u64 = 256 << 20;
/// Bytes the catch-up decoder reads at a time.
const PIPELINE_CHUNK_BYTES: usize = 1 << 20;
/// Events per hand-over from the catch-up decoder.
pub const PIPELINE_BATCH_EVENTS: usize = 4096;
/// How often a catch-up publishes its progress to readers.
pub const CATCH_UP_PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// Batches the catch-up decoder may run ahead: bounds its memory.
const PIPELINE_BATCHES_AHEAD: usize = 4;
/// How often the lag summary is logged at info level while events flow.
pub const LAG_LOG_INTERVAL: Duration = Duration::from_secs(1);
/// Most lag samples kept per summary interval (enough for exact percentiles at 100k/s).
const LAG_SAMPLES_MAX: usize = 100_000;

/// The running tailer thread.
pub struct TailerTask {
    stop: Arc<AtomicBool>,
    wake: SyncSender<()>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl TailerTask {
    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.try_send(());
        if let Some(join) = self.join.take() {
            let _ = join.join();
        }
    }
}

impl Drop for TailerTask {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// What the tailer starts from and where it writes snapshots.
pub struct TailerSetup {
    /// The log and its durable watermark.
    pub source: Box<dyn LogSource>,
    /// The model at `cursor` (genesis or a snapshot).
    pub model: ReadModel,
    pub cursor: LogCursor,
    pub snapshots: Option<SnapshotOptions>,
}

/// Starts following the log.
pub fn spawn(setup: TailerSetup, state: Arc<QueryState>) -> TailerTask {
    let (wake, woken) = sync_channel(1);
    let stop = Arc::new(AtomicBool::new(false));
    let tailer = Tailer::new(setup, state);
    let (stop2, wake2) = (stop.clone(), wake.clone());
    let join = std::thread::Builder::new()
        .name("tailer".into())
        .spawn(move || tailer.run(stop2, wake2, woken))
        .expect("spawning the tailer thread");
    TailerTask {
        stop,
        wake,
        join: Some(join),
    }
}

/// Follows the log into the read model. [`spawn`] runs it on its own thread; a
/// simulation calls [`Tailer::step`] directly.
pub struct Tailer {
    /// The log and the writer's durable watermark: never apply past it.
    source: Box<dyn LogSource>,
    /// Read buffer, reused.
    buf: Vec<u8>,
    /// Everything the events are folded into. Apart from the source, so that a
    /// catch-up can lend the source to its decoder thread while this one folds.
    fold: Fold,
}

/// One line as the tailer takes it in: decoded, or (a line of a market this side
/// does not hold, `--markets`) only its checked head; or a run of such lines the
/// source left out, up to the cursor just past them.
enum Line {
    Event(Envelope),
    Other(LineHead),
    LeftOut(LogCursor),
}

impl Line {
    /// When it was committed (`None`: lines left out, whose time is not known).
    fn ts_us(&self) -> Option<u64> {
        match self {
            Line::Event(env) => Some(env.ts_us),
            Line::Other(head) => Some(head.ts_us),
            Line::LeftOut(_) => None,
        }
    }
}

/// Decodes lines for a model holding the markets `held` says: all of a line of a
/// held market (or one laid out otherwise), only the checked head of another's.
#[derive(Clone)]
struct LineDecoder {
    markets: Arc<[MarketSpec]>,
    held: Arc<[bool]>,
    /// Every market held: decode every line.
    all: bool,
}

impl LineDecoder {
    fn new(model: &ReadModel) -> Self {
        LineDecoder {
            markets: model.markets.clone(),
            held: model.held.clone(),
            all: model.held.iter().all(|h| *h),
        }
    }

    fn decode(&self, line: &[u8]) -> Result<(u64, Line), LineError> {
        if !self.all
            && let Some(head) = shared_events::peek_head(line)?
            && let Some(at) = shared_events::state::market_index(&self.markets, head.market)
            && !self.held[usize::from(at)]
        {
            return Ok((head.seq, Line::Other(head)));
        }
        let env = shared_events::decode_line(line)?;
        Ok((env.seq, Line::Event(env)))
    }
}

/// The read model and what applying events to it updates: the cursor, the shared
/// state readers see, lag, snapshots, metrics.
struct Fold {
    model: ReadModel,
    /// Just past the last applied line.
    cursor: LogCursor,
    state: Arc<QueryState>,
    lag: LagWindow,
    /// Writes the read side's snapshots, if any are wanted.
    snapshots: Option<Checkpointer>,
    /// Commit-to-visible lag of every applied event.
    lag_seconds: metrics::Histogram,
    applied_seq: metrics::Gauge,
}

impl Tailer {
    /// A tailer that continues `setup.model` from `setup.cursor`, publishing into `state`.
    pub fn new(setup: TailerSetup, state: Arc<QueryState>) -> Self {
        let start_seq = setup.model.seq;
        Tailer {
            source: setup.source,
            buf: Vec::new(),
            fold: Fold {
                model: setup.model,
                cursor: setup.cursor,
                state,
                lag: LagWindow::default(),
                snapshots: setup.snapshots.map(|o| Checkpointer::new(o, start_seq)),
                lag_seconds: metrics::histogram!("foldbook_lag_seconds"),
                applied_seq: metrics::gauge!("foldbook_applied_seq"),
            },
        }
    }

    /// The read model as of the last applied event.
    pub fn model(&self) -> &ReadModel {
        &self.fold.model
    }

    /// Just past the last applied line.
    pub fn cursor(&self) -> LogCursor {
        self.fold.cursor
    }

    fn run(mut self, stop: Arc<AtomicBool>, wake: SyncSender<()>, woken: Receiver<()>) {
        let mut watcher = self.source.watch(wake.clone());
        let mut waiting_logged = false;
        while !stop.load(Ordering::Acquire) {
            let stepped = self.step();
            if self.source.rewatch() {
                drop(watcher.take());
                watcher = self.source.watch(wake.clone());
            }
            match stepped {
                Ok(true) => continue, // more may be buffered: read again before sleeping
                Ok(false) => {
                    self.fold.state.set_error(None);
                }
                Err(StepError::Waiting(what)) => {
                    if !waiting_logged {
                        tracing::info!(path = %self.source.name(), "waiting for {what}");
                        waiting_logged = true;
                    }
                }
                Err(StepError::Stuck(message)) => {
                    if self.fold.state.set_error(Some(message.clone())) {
                        tracing::error!(path = %self.source.name(), error = %message, "read side stopped applying the log");
                    }
                }
            }
            self.fold.maybe_checkpoint();
            self.fold
                .lag
                .maybe_log(self.fold.model.seq, self.fold.state.durable_seq());
            match woken.recv_timeout(POLL_INTERVAL) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.fold.final_checkpoint();
    }

    /// Reads and applies what is new and durable, then publishes it. `Ok(true)` when
    /// it stopped at the read bound and more is waiting.
    pub fn step(&mut self) -> Result<bool, StepError> {
        let io = |e: std::io::Error| StepError::Stuck(format!("reading the log: {e}"));
        let mark = match self.source.watermark().map_err(io)? {
            Some(mark) => mark,
            // Missing, or caught mid-rewrite: nothing is known to be durable yet.
            None => return Err(StepError::Waiting("the writer's durable watermark")),
        };
        self.fold.state.set_durable_seq(mark.seq);
        let Some(len) = self.source.length().map_err(io)? else {
            return Err(StepError::Waiting("the log to appear"));
        };
        let end = len.min(mark.offset);
        if end < self.fold.cursor.offset {
            return Err(StepError::Stuck(format!(
                "the log (length {len}, durable up to {}) ends before the {} bytes already applied (seq {}): it was truncated or replaced",
                mark.offset, self.fold.cursor.offset, self.fold.model.seq
            )));
        }
        let backlog = end - self.fold.cursor.offset;
        if backlog == 0 {
            return Ok(false);
        }
        if backlog >= PIPELINE_BYTES_MIN as u64 && self.fold.state.live.receiver_count() == 0 {
            return self.catch_up(end, mark);
        }
        // Read from the cursor up to `end` or READ_BYTES_MAX, moving past the runs
        // of lines the source left out on the way.
        self.buf.clear();
        let mut batch: Vec<(Line, usize, usize)> = Vec::new();
        let mut scan = self.fold.cursor;
        let decoder = LineDecoder::new(&self.fold.model);
        let mut decoded = Ok(0);
        let mut full = false;
        while scan.offset < end {
            if let Some((from, to)) = self.source.left_out(scan.offset)
                && from.offset <= scan.offset
            {
                check_left_out(scan, from, to, end)?;
                batch.push((Line::LeftOut(to), self.buf.len(), 0));
                scan = to;
                continue;
            }
            if self.buf.len() >= READ_BYTES_MAX {
                full = true;
                break;
            }
            let start = self.buf.len();
            let want = ((end - scan.offset) as usize).min(READ_BYTES_MAX - start);
            self.buf.resize(start + want, 0);
            let got =
                read_full_at(&mut *self.source, scan.offset, &mut self.buf[start..]).map_err(io)?;
            self.buf.truncate(start + got);
            let mut at = start;
            decoded = scan.decode_lines_with(
                &self.buf[start..],
                |line| decoder.decode(line),
                |env, raw| {
                    batch.push((env, at, raw.len()));
                    at += raw.len();
                },
            );
            // A read that stopped short of `end` stopped at a run left out; anything
            // else (a torn line, a bad one, nothing to read) ends the step.
            match decoded {
                Ok(used) if used == got && got > 0 && got < want => {}
                Ok(_) => {
                    full = got == READ_BYTES_MAX - start;
                    break;
                }
                Err(_) => break,
            }
        }
        let mut applied = Applied::new(
            self.fold.model.seq,
            self.fold.state.live.receiver_count() > 0,
        );
        let mut misfit = None;
        for (env, start, line_len) in &batch {
            let line = &self.buf[*start..start + line_len];
            if let Err(e) = self.fold.apply_one(env, line, &mark, &mut applied) {
                misfit = Some(e);
                break;
            }
        }
        self.fold.finish_batch(applied, &mark);
        if let Some(message) = misfit {
            return Err(StepError::Stuck(message));
        }
        match decoded {
            Ok(_) => Ok(full),
            Err(bad) => Err(StepError::Stuck(format!("bad line in the log: {bad}"))),
        }
    }

    /// A large backlog (a start from genesis, a read side that fell far behind):
    /// reading and decoding (checksums, JSON) move to a second thread that runs a
    /// few batches ahead, so the two cores split the work; this thread applies, and
    /// publishes every [`CATCH_UP_PUBLISH_INTERVAL`], so reads see progress.
    /// Same checks and the same outcome as the plain path, which handles live
    /// streams (they want the raw lines) and small steps.
    fn catch_up(&mut self, end: u64, mark: Watermark) -> Result<bool, StepError> {
        let stop_at = end.min(self.fold.cursor.offset + PIPELINE_BYTES_MAX);
        let start = self.fold.cursor;
        // The decoder thread borrows the source while this one folds.
        let (source, fold) = (&mut *self.source, &mut self.fold);
        let outcome = std::thread::scope(|scope| {
            let (tx, rx) = sync_channel::<Vec<(Line, u64)>>(PIPELINE_BATCHES_AHEAD);
            let lines = LineDecoder::new(&fold.model);
            let decoder = scope.spawn(move || decode_range(source, start, stop_at, &lines, tx));
            let mut misfit = None;
            let mut applied = Applied::new(fold.model.seq, false);
            let mut published = Instant::now();
            'batches: for batch in rx {
                for (env, line_len) in &batch {
                    if let Err(e) = fold.apply_len(env, *line_len, &mark, &mut applied) {
                        misfit = Some(e);
                        // Dropping the receiver stops the decoder at its next batch.
                        break 'batches;
                    }
                }
                // Publishing is cheap, but the next change to a published level
                // copies its path: during a catch-up, publish a few times a second.
                if published.elapsed() >= CATCH_UP_PUBLISH_INTERVAL {
                    fold.finish_batch(applied, &mark);
                    applied = Applied::new(fold.model.seq, false);
                    published = Instant::now();
                }
            }
            fold.finish_batch(applied, &mark);
            let decoded = decoder.join().expect("the log decoder thread panicked");
            (misfit, decoded)
        });
        match outcome {
            (Some(message), _) => Err(StepError::Stuck(message)),
            (None, Err(stuck)) => Err(stuck),
            (None, Ok(())) if self.fold.cursor.offset < end => Ok(true),
            (None, Ok(())) => {
                // Caught up: the model's tables grew by doubling on the way; hand
                // the old ones back.
                plumbing::memory::release_free();
                Ok(false)
            }
        }
    }
}

impl Fold {
    /// Applies one event whose line (with its `\n`) is `line`.
    fn apply_one(
        &mut self,
        env: &Line,
        line: &[u8],
        mark: &Watermark,
        applied: &mut Applied,
    ) -> Result<(), String> {
        self.apply_len(env, line.len() as u64, mark, applied)?;
        if applied.streaming {
            let raw = line.strip_suffix(b"\n").unwrap_or(line);
            match env {
                Line::Event(env) => applied.live.push(LineEvent::new(env, raw)),
                Line::Other(head) => applied.live.push(LineEvent::of_head(head, raw)),
                // Their events are not here: a stream wanting them reads the log.
                Line::LeftOut(_) => {}
            }
        }
        Ok(())
    }

    /// Applies one event whose line is `line_len` bytes long, and moves the cursor
    /// past it: a stop leaves the cursor right after the last applied event.
    fn apply_len(
        &mut self,
        env: &Line,
        line_len: u64,
        mark: &Watermark,
        applied: &mut Applied,
    ) -> Result<(), String> {
        match env {
            Line::Event(env) => self.model.apply(env),
            Line::Other(head) => self.model.skip(head.seq, head.market),
            Line::LeftOut(to) => {
                // Lines of markets this model does not hold: it only moves on, as
                // `skip` does for each (checked against the cursor when read).
                assert_eq!(
                    self.model.seq + 1,
                    self.cursor.next_seq,
                    "model and cursor agree"
                );
                self.model.seq = to.next_seq - 1;
                self.cursor = *to;
                self.state.seek.note(self.cursor);
                return Ok(());
            }
        }
        .map_err(|e| e.to_string())?;
        self.cursor.offset += line_len;
        self.cursor.lines += 1;
        self.cursor.next_seq += 1;
        self.state.seek.note(self.cursor);
        // Lag counts from when the event became durable (acknowledgeable), which
        // is at or after its commit timestamp.
        let ts_us = env.ts_us().expect("a line read");
        let lag_us = applied.now_us.saturating_sub(ts_us.max(mark.ts_us));
        self.lag.record(lag_us);
        self.lag_seconds.record(lag_us as f64 / 1e6);
        applied.lag_us = Some(lag_us);
        Ok(())
    }

    /// After a batch: publish the new snapshot and the live events, if anything
    /// was applied.
    fn finish_batch(&mut self, applied: Applied, mark: &Watermark) {
        if let Some(lag_us) = applied.lag_us {
            self.state.set_last_lag_us(lag_us);
        }
        if self.model.seq == applied.seq_before {
            return;
        }
        self.publish();
        // A stream that subscribed after this batch began finds no lines in it (they
        // were not kept): the empty batch tells it to read them from the log.
        if applied.streaming || self.state.live.receiver_count() > 0 {
            // No receiver left is fine: nobody is streaming.
            let _ = self.state.live.send(Arc::new(applied.live));
        }
        self.applied_seq.set(self.model.seq as f64);
        tracing::debug!(
            seq = self.model.seq,
            events = self.model.seq - applied.seq_before,
            behind = mark.seq.saturating_sub(self.model.seq),
            "applied batch"
        );
    }

    fn publish(&mut self) {
        self.state.publish(self.model.book_view());
    }

    /// Every `every` events, copies the model and writes it on another thread.
    fn maybe_checkpoint(&mut self) {
        let Some(mut checkpointer) = self.snapshots.take() else {
            return;
        };
        checkpointer.maybe(self.model.seq, || {
            let (seq, offset, body) = (self.model.seq, self.cursor.offset, self.model.encode());
            move |dir: &Path| checkpoint::write(dir, seq, offset, body)
        });
        self.snapshots = Some(checkpointer);
    }

    /// At a clean stop, a snapshot of the final state if it moved since the last one.
    fn final_checkpoint(&mut self) {
        let Some(mut checkpointer) = self.snapshots.take() else {
            return;
        };
        checkpointer.finish(self.model.seq, || {
            let (seq, offset, body) = (self.model.seq, self.cursor.offset, self.model.encode());
            move |dir: &Path| checkpoint::write(dir, seq, offset, body)
        });
    }
}

/// What one applied batch collected on the way.
struct Applied {
    seq_before: u64,
    /// Whether live streams want the raw lines.
    streaming: bool,
    live: Vec<LineEvent>,
    /// The clock, read once per batch.
    now_us: u64,
    /// Lag of the last applied event.
    lag_us: Option<u64>,
}

impl Applied {
    fn new(seq_before: u64, streaming: bool) -> Self {
        Applied {
            seq_before,
            streaming,
            live: Vec::new(),
            now_us: now_us(),
            lag_us: None,
        }
    }
}

/// The decoding half of [`Tailer::catch_up`]: reads the log from `start` up to
/// `stop_at` in chunks, checks and decodes every complete line, and hands batches of
/// (event, line length) to `tx`. Stops early when the receiver goes away.
fn decode_range(
    source: &mut dyn LogSource,
    start: LogCursor,
    stop_at: u64,
    lines: &LineDecoder,
    tx: SyncSender<Vec<(Line, u64)>>,
) -> Result<(), StepError> {
    let io = |e: std::io::Error| StepError::Stuck(format!("reading the log: {e}"));
    let mut cursor = start;
    let mut at = start.offset;
    let mut buf: Vec<u8> = Vec::with_capacity(2 * PIPELINE_CHUNK_BYTES);
    let mut batch = Vec::with_capacity(PIPELINE_BATCH_EVENTS);
    loop {
        // Complete lines end where a run left out starts: move past it.
        if buf.is_empty()
            && let Some((from, to)) = source.left_out(at)
            && from.offset <= at
        {
            check_left_out(cursor, from, to, u64::MAX)?;
            batch.push((Line::LeftOut(to), 0));
            cursor = to;
            at = to.offset;
            if at >= stop_at {
                if !batch.is_empty() {
                    let _ = tx.send(batch);
                }
                return Ok(());
            }
            continue;
        }
        let before = buf.len();
        buf.resize(
            before + PIPELINE_CHUNK_BYTES.min(stop_at.saturating_sub(at) as usize),
            0,
        );
        let got = read_full_at(source, at, &mut buf[before..]).map_err(io)?;
        at += got as u64;
        buf.truncate(before + got);
        let mut gone = false;
        let decoded = cursor.decode_lines_with(
            &buf,
            |line| lines.decode(line),
            |env, raw| {
                batch.push((env, raw.len() as u64));
                if batch.len() == PIPELINE_BATCH_EVENTS && !gone {
                    let full =
                        std::mem::replace(&mut batch, Vec::with_capacity(PIPELINE_BATCH_EVENTS));
                    gone = tx.send(full).is_err();
                }
            },
        );
        if gone {
            return Ok(());
        }
        match decoded {
            Ok(used) => {
                buf.drain(..used);
            }
            Err(bad) => {
                // What decoded before the bad line is applied; then the tailer stops.
                if !batch.is_empty() {
                    let _ = tx.send(batch);
                }
                return Err(StepError::Stuck(format!("bad line in the log: {bad}")));
            }
        }
        if got == 0 {
            // The end of the range; an incomplete last line waits for the next step.
            if !batch.is_empty() {
                let _ = tx.send(batch);
            }
            return Ok(());
        }
    }
}

/// Checks a run of lines left out against the cursor it should start at: it starts
/// there and ends after it, within `end`. Else the source contradicts itself.
fn check_left_out(
    cursor: LogCursor,
    from: LogCursor,
    to: LogCursor,
    end: u64,
) -> Result<(), StepError> {
    let fits = from == cursor
        && to.offset > from.offset
        && to.offset <= end
        && to.next_seq > from.next_seq
        && to.lines - from.lines == to.next_seq - from.next_seq;
    if fits {
        Ok(())
    } else {
        Err(StepError::Stuck(format!(
            "the log leaves out lines from {from:?} to {to:?}, which do not follow the \
             lines applied (up to {cursor:?}, durable up to byte {end})"
        )))
    }
}

/// Why a step applied nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepError {
    /// The log or the watermark does not exist yet.
    Waiting(&'static str),
    /// Applying cannot go on until the log changes.
    Stuck(String),
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Append-to-visible lag samples over one logging interval.
#[derive(Default)]
struct LagWindow {
    started: Option<Instant>,
    samples_us: Vec<u64>,
    events: u64,
    max_us: u64,
}

impl LagWindow {
    fn record(&mut self, lag_us: u64) {
        self.started.get_or_insert_with(Instant::now);
        self.events += 1;
        self.max_us = self.max_us.max(lag_us);
        if self.samples_us.len() < LAG_SAMPLES_MAX {
            self.samples_us.push(lag_us);
        }
    }

    fn maybe_log(&mut self, seq: u64, durable_seq: u64) {
        let Some(started) = self.started else {
            return;
        };
        if started.elapsed() < LAG_LOG_INTERVAL {
            return;
        }
        self.samples_us.sort_unstable();
        let pct = |p: f64| {
            let i = ((self.samples_us.len() as f64 - 1.0) * p).round() as usize;
            self.samples_us.get(i).copied().unwrap_or(0) as f64 / 1000.0
        };
        tracing::info!(
            seq,
            behind = durable_seq.saturating_sub(seq),
            events = self.events,
            lag_ms_p50 = pct(0.50),
            lag_ms_p99 = pct(0.99),
            lag_ms_max = self.max_us as f64 / 1000.0,
            "read side caught up to seq {seq}"
        );
        *self = LagWindow::default();
    }
}
