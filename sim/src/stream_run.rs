//! One seed on the simulated JetStream stream ([`crate::stream`]): the same workload as
//! on the disk, through the real writer (`Writer::commit_answering`: group commit,
//! fence, reload, decide again) on the real decisions of the JetStream write path
//! (`command_svc::atomic_publish`), recovery (`recover_model`) and the read side
//! (`load_model`, `Tailer::step`), with the stream's faults, a second writer that
//! appends between or in the middle of the first one's group commits, writers killed
//! and restarted, the server restarting, and snapshots of either side.
//!
//! The invariants it checks after every step are in the crate docs.

use super::*;
use crate::stream::{PublishFault, RETRY_WINDOW_US, Stream, StreamWriter};
use command_svc::writer::DispatchError;
use std::sync::Mutex;

/// Chance, in percent, that a commit has faults armed for its publishing attempts.
pub const STREAM_FAULT_PERCENT: u64 = 20;
/// Most faults armed for one commit (one per attempt, in order).
pub const STREAM_FAULTS_MAX: u64 = 3;
/// Chance, in percent, that a commit with faults also has its read-back fail.
pub const READ_BACK_FAILURE_PERCENT: u64 = 10;
/// Chance, in percent, that a server restart lasts longer than the writer's retry
/// window (so the writer gives up).
pub const LONG_OUTAGE_PERCENT: u64 = 25;
/// Tailer steps a poll may take to catch up: the consumer delivers all that is
/// stored half of the time, else a part, so this many steps fail to catch up with a
/// chance of 2^-64.
pub const STREAM_CATCH_UP_TRIES_MAX: u32 = 64;
/// The writers on the stream: the first one, and a second that now and then appends.
const WRITERS: usize = 2;

/// What a run on the stream does at a step, with its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Batch,
    SecondWriterBatch,
    /// A group commit of the first writer with one of the second's run in its middle.
    Interleaved,
    Poll,
    WriterCrash,
    SecondWriterStop,
    StreamRestart,
    ReaderRestart,
    WriterSnapshot,
    ReaderSnapshot,
}

const ACTIONS: &[(Action, u64)] = &[
    (Action::Batch, 52),
    (Action::SecondWriterBatch, 8),
    (Action::Interleaved, 8),
    (Action::Poll, 8),
    (Action::WriterCrash, 4),
    (Action::SecondWriterStop, 3),
    (Action::StreamRestart, 3),
    (Action::ReaderRestart, 3),
    (Action::WriterSnapshot, 3),
    (Action::ReaderSnapshot, 3),
];

type StreamWriterOf = Writer<StreamWriter>;

/// A commit's outcome, as the run sees it.
struct Committed {
    writer: StreamWriterOf,
    commands: Vec<Command>,
    answers: Vec<Result<Outcome, DispatchError>>,
    result: Result<(), String>,
}

/// A second writer's commit that ran inside another one's, collected afterwards.
type Slot = Arc<Mutex<Option<Committed>>>;

/// Runs one seed on the simulated stream through [`STEPS_PER_SEED`] steps, checking
/// every invariant after each; then kills and recovers the writer once more.
pub fn run_stream_seed(seed: u64) -> Result<Stats, Failure> {
    let mut world = StreamWorld::new(seed).map_err(|message| Failure {
        seed,
        step: 0,
        message,
        trace: Vec::new(),
    })?;
    let result = world.run();
    let trace = world.trace.iter().cloned().collect();
    let mut stats = world.stats;
    let c = world.stream.counts();
    stats.refused_stale = c.refused_stale;
    stats.refused_duplicate = c.refused_duplicate;
    stats.unclear_answers = c.unclear_answers;
    stats.read_backs = c.read_backs;
    stats.fences = c.fences;
    stats.interlopers = c.interlopers;
    stats.faults_fired = c.faults_fired;
    result.map(|()| stats).map_err(|message| Failure {
        seed,
        step: world.step,
        message: format!("on the simulated stream: {message}"),
        trace,
    })
}

struct StreamWorld {
    step: u64,
    rng: Rng,
    stream: Stream,
    clock: Arc<AtomicU64>,
    genesis: BookState,
    snapshots: ScratchDir,
    /// The running writers; `None` while one's process is down.
    writers: [Option<StreamWriterOf>; WRITERS],
    tailer: Option<Tailer>,
    /// The line of every acknowledged event, by seq.
    acked: BTreeMap<u64, Vec<u8>>,
    /// The write sides' digest after each seq one committed or recovered to.
    write_digests: BTreeMap<u64, u64>,
    /// The first acknowledged answer for each idempotency key, with its command.
    answers: HashMap<String, (Command, Outcome)>,
    workload: Workload,
    /// How far the stream's messages have been checked.
    checked: LogCursor,
    trace: VecDeque<String>,
    stats: Stats,
}

impl StreamWorld {
    fn new(seed: u64) -> Result<Self, String> {
        let genesis = BookState::parse(genesis_of(seed))?;
        let funded = genesis.accounts.is_some();
        let mut rng = Rng::new(seed);
        let clock = Arc::new(AtomicU64::new(CLOCK_START_US));
        let stream = Stream::new(rng.next_u64(), clock.clone());
        let mut write_digests = BTreeMap::new();
        write_digests.insert(0, Book::from_state(&genesis).digest());
        Ok(StreamWorld {
            step: 0,
            rng,
            stream,
            clock,
            genesis,
            snapshots: ScratchDir::new(seed)?,
            writers: [None, None],
            tailer: None,
            acked: BTreeMap::new(),
            write_digests,
            answers: HashMap::new(),
            workload: Workload::default(),
            checked: LogCursor::start(),
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
        self.start_writer(0, None)?;
        self.start_reader(false)?;
        let weights: Vec<u64> = ACTIONS.iter().map(|(_, w)| *w).collect();
        for step in 1..=STEPS_PER_SEED {
            self.step = step;
            self.stats.steps += 1;
            let tick = self.rng.range(1, CLOCK_STEP_US_MAX);
            self.clock.fetch_add(tick, Ordering::Relaxed);
            // A writer that failed exits; the first is restarted at once.
            if self.writers[0].is_none() {
                self.start_writer(0, None)?;
            }
            if self.tailer.is_none() {
                self.start_reader(false)?;
            }
            if step % POLL_EVERY_STEPS == 0 {
                self.poll()?;
            }
            match ACTIONS[self.rng.weighted(&weights)].0 {
                Action::Batch => self.batch(0, false)?,
                Action::SecondWriterBatch => self.batch(1, false)?,
                Action::Interleaved => self.batch(0, true)?,
                Action::Poll => self.poll()?,
                Action::WriterCrash => {
                    let w = self.rng.below(WRITERS as u64) as usize;
                    if self.writers[w].is_some() {
                        self.note(format!("writer {w} killed"));
                        self.crash_writer(w)?;
                    }
                }
                Action::SecondWriterStop => {
                    if self.writers[1].take().is_some() {
                        self.note("writer 1 stopped".into());
                    }
                }
                Action::StreamRestart => {
                    let down_us = self.outage_us();
                    self.stats.stream_restarts += 1;
                    self.note(format!("the server restarts: down for {down_us} µs"));
                    self.stream.restart(down_us);
                }
                Action::ReaderRestart => {
                    self.note("read side restarted".into());
                    let rebuild = self.rng.percent(10);
                    self.start_reader(rebuild)?;
                    self.tail("after restart")?;
                }
                Action::WriterSnapshot => self.writer_snapshot()?,
                Action::ReaderSnapshot => self.reader_snapshot(),
            }
            if self.rng.percent(50) {
                self.tail("notified")?;
            }
            self.check_stream()?;
            for writer in self.writers.iter().flatten() {
                writer.model().book.check_accounts()?;
            }
            if let Some(tailer) = &self.tailer {
                check_read_accounts(tailer.model(), &self.genesis)?;
            }
        }
        // The end: the read side catches up, the writer is killed and recovered, a
        // read side rebuilt from genesis agrees.
        self.step += 1;
        self.poll()?;
        self.crash_writer(0)?;
        self.start_reader(true)?;
        self.poll()?;
        self.check_stream()
    }

    /// How long a server restart keeps it from answering: mostly short, sometimes
    /// longer than the writer's retry window.
    fn outage_us(&mut self) -> u64 {
        if self.rng.percent(LONG_OUTAGE_PERCENT) {
            self.rng
                .range(RETRY_WINDOW_US, RETRY_WINDOW_US + 10_000_000)
        } else {
            self.rng.range(50_000, 3_000_000)
        }
    }

    fn fault(&mut self) -> PublishFault {
        match self.rng.below(6) {
            0 => PublishFault::LostMessage,
            1 => PublishFault::LostBeforeStore,
            2 => PublishFault::AckLost,
            3 => PublishFault::BrokenAfterStore,
            4 => PublishFault::Restart {
                stored: self.rng.percent(50),
                down_us: self.outage_us(),
            },
            // Rarely: it fails the writer at once.
            _ if self.rng.percent(30) => PublishFault::AtomicDisabled,
            _ => PublishFault::AckLost,
        }
    }

    /// The commands of one group commit, decided against writer `w`'s book.
    fn commands(&mut self, w: usize) -> Vec<Command> {
        let n = self.rng.range(1, BATCH_COMMANDS_MAX);
        (0..n)
            .map(|_| {
                let book = &self.writers[w]
                    .as_ref()
                    .expect("a running writer")
                    .model()
                    .book;
                self.workload.command(&mut self.rng, book)
            })
            .collect()
    }

    /// One group commit of writer `w` (started if it is down), perhaps with faults
    /// armed, perhaps (`interleave`) with a commit of the other writer run in its
    /// middle.
    fn batch(&mut self, w: usize, interleave: bool) -> Result<(), String> {
        if self.writers[w].is_none() {
            self.start_writer(w, None)?;
        }
        let commands = self.commands(w);
        let fired_before = self.stream.counts().faults_fired;
        let was_down = self.stream.is_down();
        if self.rng.percent(STREAM_FAULT_PERCENT) {
            let n = self.rng.range(1, STREAM_FAULTS_MAX);
            let faults: Vec<PublishFault> = (0..n).map(|_| self.fault()).collect();
            self.note(format!("faults armed: {faults:?}"));
            self.stream.arm(&faults);
            if self.rng.percent(READ_BACK_FAILURE_PERCENT) {
                self.stream.arm_read_back_failure();
            }
        }
        let other = 1 - w;
        let slot: Slot = Arc::new(Mutex::new(None));
        if interleave {
            if self.writers[other].is_none() {
                self.start_writer(other, None)?;
            }
            let other_commands = self.commands(other);
            let mut writer = self.writers[other].take().expect("started");
            let at = self.rng.range(1, 3);
            let into = slot.clone();
            self.stream.arm_interloper(
                at,
                Box::new(move || {
                    let mut answers = Vec::new();
                    let result =
                        writer.commit_answering(other_commands.clone(), |a| answers.push(a));
                    *into.lock().expect("slot") = Some(Committed {
                        writer,
                        commands: other_commands,
                        answers,
                        result,
                    });
                }),
            );
        }
        let mut writer = self.writers[w].take().expect("a running writer");
        let mut answers = Vec::new();
        let result = writer.commit_answering(commands.clone(), |a| answers.push(a));
        // A second writer's commit not reached inside the first runs after it.
        if let Some(late) = self.stream.take_interloper() {
            late();
        }
        self.stream.disarm();
        let explained =
            self.stream.counts().faults_fired > fired_before || was_down || self.stream.is_down();
        if let Some(inner) = slot.lock().expect("slot").take() {
            self.stats.second_writer_batches += 1;
            self.settle(other, inner, explained)?;
        }
        let committed = Committed {
            writer,
            commands,
            answers,
            result,
        };
        if w == 1 {
            self.stats.second_writer_batches += 1;
        }
        self.settle(w, committed, explained)
    }

    /// Checks a commit's answers and puts its writer back, or lets it go after it
    /// failed (`explained`: a fault fired or the server was down meanwhile).
    fn settle(&mut self, w: usize, c: Committed, explained: bool) -> Result<(), String> {
        self.stats.batches += 1;
        if c.answers.len() != c.commands.len() {
            return Err(format!(
                "writer {w} gave {} answers to {} commands",
                c.answers.len(),
                c.commands.len()
            ));
        }
        let failed = c.result.is_err();
        for (cmd, answer) in c.commands.iter().zip(&c.answers) {
            self.check_answer(cmd, answer, failed)?;
        }
        let (next_seq, _) = c.writer.log_end();
        match c.result {
            Ok(()) => {
                let digest = c.writer.model().book.digest();
                self.record_digest(next_seq - 1, digest)?;
                self.note(format!(
                    "writer {w}: batch of {} answered, at seq {}",
                    c.commands.len(),
                    next_seq - 1
                ));
                self.writers[w] = Some(c.writer);
                Ok(())
            }
            Err(reason) if explained => {
                self.stats.fail_stops += 1;
                self.note(format!(
                    "writer {w}: batch of {} failed, the writer exits: {reason}",
                    c.commands.len()
                ));
                Ok(())
            }
            Err(reason) => Err(format!(
                "writer {w}'s commit failed without a fault: {reason}"
            )),
        }
    }

    /// One answer, against the stream and the earlier answers.
    fn check_answer(
        &mut self,
        cmd: &Command,
        answer: &Result<Outcome, DispatchError>,
        failed: bool,
    ) -> Result<(), String> {
        let known = key_of(cmd).and_then(|k| self.answers.get(k));
        match answer {
            Ok(outcome) => self.check_acknowledged(cmd, outcome),
            Err(DispatchError::Rejected(Rejection::KeyReused)) => match known {
                Some((first, _)) if same_request(cmd, first) => {
                    Err(format!("a retry of {cmd:?} got 409"))
                }
                // Another request under a known key, or one whose first attempt got
                // 503 and landed all the same.
                _ if key_of(cmd).is_some() => Ok(()),
                _ => Err(format!("409 for {cmd:?}, which has no key")),
            },
            Err(DispatchError::Rejected(Rejection::NotResting(_) | Rejection::NotOwner(_)))
                if matches!(cmd, Command::Cancel { .. } | Command::Amend { .. }) =>
            {
                Ok(())
            }
            // An order or amend that would change nothing: 409, nothing written.
            Err(DispatchError::Rejected(Rejection::Unchanged(_))) => Ok(()),
            // With accounts on, what the money does not cover.
            Err(DispatchError::Rejected(Rejection::InsufficientFunds {
                needed,
                available,
                ..
            })) if self.genesis.accounts.is_some()
                && matches!(
                    cmd,
                    Command::Place { .. } | Command::Withdraw { .. } | Command::Amend { .. }
                )
                && available < needed =>
            {
                Ok(())
            }
            Err(DispatchError::Unavailable(why)) if failed => {
                let _ = why;
                Ok(())
            }
            Err(e) => Err(format!("unexpected answer {e:?} to {cmd:?}")),
        }
    }

    /// A 2xx: the event is in the stream at its seq, as answered; a seq is handed out
    /// once, a key's retry gets its first answer.
    fn check_acknowledged(&mut self, cmd: &Command, outcome: &Outcome) -> Result<(), String> {
        let seq = outcome.seq();
        let line = self.stream.line(seq).ok_or_else(|| {
            format!(
                "{cmd:?} was answered with seq {seq}, beyond the stream's {}",
                self.stream.len()
            )
        })?;
        let env = shared_events::decode_line(&line)
            .map_err(|e| format!("the stream's line at seq {seq} does not decode: {e:?}"))?;
        outcome_matches(outcome, &env, cmd)?;
        if let Some(k) = key_of(cmd) {
            match self.answers.get(k) {
                Some((first_cmd, first)) => {
                    if !same_request(cmd, first_cmd) {
                        return Err(format!(
                            "{cmd:?} reuses the key of {first_cmd:?}: it must get 409, it got {outcome:?}"
                        ));
                    }
                    if outcome != first {
                        return Err(format!(
                            "a retry of {cmd:?} got {outcome:?}, the first answer was {first:?}"
                        ));
                    }
                    self.stats.retries_answered += 1;
                    return Ok(());
                }
                None => {
                    self.answers
                        .insert(k.to_owned(), (cmd.clone(), outcome.clone()));
                }
            }
        }
        if self.acked.insert(seq, line).is_some() {
            return Err(format!("seq {seq} was acknowledged twice (now to {cmd:?})"));
        }
        self.stats.events_acked += 1;
        if cmd.is_transfer() {
            self.stats.transfers_acked += 1;
        }
        Ok(())
    }

    /// The stream's new messages decode to the next seqs, each with its message id;
    /// every acknowledged line is still there.
    fn check_stream(&mut self) -> Result<(), String> {
        let (bytes, start) = self.stream.bytes_from(self.checked.next_seq);
        if start != self.checked.offset {
            return Err(format!(
                "message {} starts at byte {start}, the lines before end at {}",
                self.checked.next_seq, self.checked.offset
            ));
        }
        let mut ids = Vec::new();
        let used = self
            .checked
            .decode_lines(&bytes, |env, raw| {
                let crc = std::str::from_utf8(&raw[raw.len() - 11..raw.len() - 3])
                    .unwrap_or("?")
                    .to_owned();
                ids.push((env.seq, format!("{}-{crc}-", env.seq)));
            })
            .map_err(|bad| format!("the stream holds a bad line: {bad}"))?;
        if used != bytes.len() {
            return Err("the stream ends in an incomplete line".into());
        }
        for (seq, prefix) in ids {
            if !self
                .stream
                .id(seq)
                .is_some_and(|id| id.starts_with(&prefix))
            {
                return Err(format!(
                    "message {seq} was stored with id {:?}, its line says {prefix}<writer>",
                    self.stream.id(seq)
                ));
            }
        }
        for (&seq, line) in &self.acked {
            if !self.stream.holds(seq, line) {
                return Err(format!(
                    "the acknowledged event at seq {seq} is not in the stream as answered"
                ));
            }
        }
        Ok(())
    }

    /// Starts writer `w`: recovery from the newest snapshot and the stream. `before`
    /// is the model of a writer that was killed in good health and that nothing was
    /// appended after: recovery must rebuild exactly it.
    fn start_writer(&mut self, w: usize, before: Option<WriteModel>) -> Result<(), String> {
        self.stats.writer_restarts += 1;
        let mut storage = self.stream.writer();
        let (model, recovery) = command_svc::recover_model(
            &mut storage,
            "sim-stream",
            &self.genesis,
            &self.snapshots.0,
            KEYS_KEPT,
            self.now_us(),
        )
        .map_err(|e| format!("recovery refused the stream: {e}"))?;
        let head = recovery.cursor.next_seq - 1;
        if recovery.cursor != self.stream.end() || recovery.torn.is_some() {
            return Err(format!(
                "writer {w} recovered to {:?} (torn: {:?}), the stream ends at {:?}",
                recovery.cursor,
                recovery.torn,
                self.stream.end()
            ));
        }
        if let Some(before) = before
            && before != model
        {
            return Err(format!(
                "recovery rebuilt another model than writer {w} had (seq {head}; digests {} before, {} after)",
                before.book.digest(),
                model.book.digest()
            ));
        }
        self.note(format!("writer {w} recovered to seq {head}"));
        self.record_digest(head, model.book.digest())?;
        let clock = self.clock.clone();
        let options = WriterOptions {
            fsync: FsyncMode::Always,
            snapshots: None,
        };
        let reload = command_svc::reload_from(
            "sim-stream".to_owned(),
            self.genesis.clone(),
            self.snapshots.0.clone(),
            KEYS_KEPT,
            Arc::new({
                let clock = clock.clone();
                move || clock.load(Ordering::Relaxed)
            }),
        );
        let writer = Writer::new(model, storage, recovery.cursor, options)
            .with_clock(Arc::new(move || clock.load(Ordering::Relaxed)))
            .with_reload(reload);
        self.writers[w] = Some(writer);
        Ok(())
    }

    /// Records (or checks) the write sides' digest at `seq`: one history, whichever
    /// writer reached it.
    fn record_digest(&mut self, seq: u64, digest: u64) -> Result<(), String> {
        match self.write_digests.insert(seq, digest) {
            Some(known) if known != digest => Err(format!(
                "the write side's digest at seq {seq} was {known}, now {digest}"
            )),
            _ => Ok(()),
        }
    }

    /// Kills writer `w`'s process and starts it again. A writer at the stream's end
    /// must come back exactly.
    fn crash_writer(&mut self, w: usize) -> Result<(), String> {
        let end = self.stream.end().next_seq;
        let before = self.writers[w]
            .take()
            .filter(|writer| writer.log_end().0 == end)
            .map(|writer| writer.model().clone());
        self.start_writer(w, before)
    }

    /// Starts the read side: its newest usable snapshot (or genesis, or rebuilding),
    /// then a consumer from there.
    fn start_reader(&mut self, rebuild: bool) -> Result<(), String> {
        self.stats.reader_restarts += 1;
        let mut log = self.stream.log();
        let (model, cursor) =
            query_svc::load_model(&self.genesis, &self.snapshots.0, &mut log, rebuild);
        if model.seq + 1 != cursor.next_seq {
            return Err(format!(
                "the read side starts at seq {} with a cursor for seq {}",
                model.seq, cursor.next_seq
            ));
        }
        if let Some(&digest) = self.write_digests.get(&model.seq)
            && digest != model.digest()
        {
            return Err(format!(
                "the read side's snapshot at seq {} has digest {}, the write side had {digest}",
                model.seq,
                model.digest()
            ));
        }
        let archive = Archive {
            held: model.held.clone(),
            genesis: self.genesis.clone(),
            log: Box::new(PathBuf::from("sim-stream")),
            snapshots: self.snapshots.0.clone(),
        };
        let state = Arc::new(QueryState::new(&model, archive, cursor));
        let setup = TailerSetup {
            source: Box::new(self.stream.source(cursor)),
            model,
            cursor,
            snapshots: None,
        };
        self.tailer = Some(Tailer::new(setup, state));
        Ok(())
    }

    /// The tailer reads what was delivered until it has nothing more, then the
    /// read-side invariants are checked.
    fn tail(&mut self, why: &str) -> Result<(), String> {
        let Some(tailer) = self.tailer.as_mut() else {
            return Ok(());
        };
        let before = tailer.model().seq;
        loop {
            match tailer.step() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => return Err(format!("the read side stopped: {e:?}")),
            }
        }
        let (seq, cursor, digest) = (tailer.model().seq, tailer.cursor(), tailer.model().digest());
        if seq != before {
            self.note(format!(
                "read side applied seq {}..={seq} ({why})",
                before + 1
            ));
        }
        if cursor.next_seq != seq + 1 {
            return Err(format!(
                "the read side is at seq {seq} with a cursor for seq {}",
                cursor.next_seq
            ));
        }
        let end = self.stream.end();
        if cursor.next_seq > end.next_seq || cursor.offset > end.offset {
            return Err(format!(
                "the read side applied up to {cursor:?}, beyond the stream's end {end:?}"
            ));
        }
        if let Some(&expected) = self.write_digests.get(&seq)
            && expected != digest
        {
            return Err(format!(
                "at seq {seq} the read side's digest is {digest}, the write side's was {expected}"
            ));
        }
        for writer in self.writers.iter().flatten() {
            if writer.log_end().0 == seq + 1 {
                let book = &writer.model().book;
                let read = self.tailer.as_ref().expect("tailing").model();
                if read.to_state(book.next_order_id()) != book.to_state() {
                    return Err(format!(
                        "at seq {seq} the read side's book differs from the write side's"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The read side's poll: it must catch up with the stream.
    fn poll(&mut self) -> Result<(), String> {
        for _ in 0..STREAM_CATCH_UP_TRIES_MAX {
            self.tail("poll")?;
            let Some(tailer) = &self.tailer else {
                return Ok(());
            };
            if tailer.model().seq >= self.stream.len() {
                return Ok(());
            }
        }
        Err(format!(
            "the read side did not catch up with the stream (seq {}) in {STREAM_CATCH_UP_TRIES_MAX} steps",
            self.stream.len()
        ))
    }

    fn writer_snapshot(&mut self) -> Result<(), String> {
        let Some(writer) = self.writers.iter().flatten().next() else {
            return Ok(());
        };
        let checkpoint = writer.checkpoint();
        checkpoint
            .write(&self.snapshots.0)
            .map_err(|e| format!("writing a write-side snapshot: {e}"))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_seed_replays_exactly() {
        let first = run_stream_seed(42).unwrap();
        let second = run_stream_seed(42).unwrap();
        assert_eq!(first, second);
        assert!(first.events_acked > 0 && first.steps == STEPS_PER_SEED);
    }
}
