//! The simulated JetStream stream: a model of one nats-server stream as the write
//! path sees it, in memory, driven by the seed. It stores an atomic batch all or
//! nothing; refuses a batch one of whose message ids (`Nats-Msg-Id`) it stored
//! within its duplicate window, and one whose first message expects another last
//! sequence (the fence); answers with a PubAck naming the stream, the last seq, the
//! batch id and size, like the server. Faults armed by the driver fire in the
//! writer's publishing attempts, in order: a message of the batch lost (the server
//! says the batch is incomplete), the batch lost before the server stored it (no
//! answer within the request timeout), the batch stored and its ack lost (a timeout)
//! or the connection broken right after (stored, no answer), the server restarting
//! (stored or not, then no responders for a while), atomic publish switched off; and
//! a read-back that fails. A second writer may append in the middle of a group
//! commit ([`Stream::arm_interloper`]).
//!
//! The writer's side ([`StreamWriter`]: `Storage`, `Recoverable`) drives the real
//! decision code of the JetStream write path, `command_svc::atomic_publish`, exactly as
//! `JetStreamStorage` does, with the simulated clock instead of the wall clock. The
//! reader's side ([`StreamSource`]: `LogSource`) delivers what is stored, late (a
//! consumer behind the stream), never what is not. Both compute byte offsets the way
//! the real stream does: each line and its newline, from seq 1 on.

use super::rng::Rng;
use command_svc::atomic_publish::{
    Answer, GroupCommit, Outgoing, PUBLISH_RETRY_WINDOW, Publisher, Refusal, Step,
};
use command_svc::storage::{Recoverable, Storage};
use query_svc::source::LogSource;
use shared_events::{LogCursor, LogRead, Watermark};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The stream's name in acks and messages.
pub const STREAM_NAME: &str = "SIM";
/// Most messages per atomic batch in the simulation (the server's `max_msgs`, and
/// the writer's part size): small, so group commits split into several batches.
pub const BATCH_MESSAGES_MAX: usize = 3;
/// How long a publish waits for its ack before it times out (plumbing's
/// `REQUEST_TIMEOUT`).
pub const ACK_TIMEOUT_US: u64 = 5_000_000;
/// The real duplicate window (2 minutes); some seeds use a short one instead, so
/// that a retry of a landed batch meets the fence rather than the dedupe.
pub const DUPLICATE_WINDOW_US: u64 = 120_000_000;
/// The shortest duplicate window a seed may choose.
pub const DUPLICATE_WINDOW_SHORT_US_MIN: u64 = 1_000_000;
/// Chance, in percent, that a seed uses a short duplicate window.
pub const SHORT_WINDOW_PERCENT: u64 = 30;
/// Chance, in percent, that a delivery to the read side takes in all that is stored
/// (else a part of it).
pub const DELIVER_ALL_PERCENT: u64 = 50;

/// A fault for one publishing attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishFault {
    /// A message of the batch is lost on its way: the server says the batch is
    /// incomplete; nothing is stored.
    LostMessage,
    /// The batch never reaches the server: no answer within the timeout.
    LostBeforeStore,
    /// Stored, and the ack lost: a timeout.
    AckLost,
    /// Stored, then the connection broke before the answer.
    BrokenAfterStore,
    /// The server restarts: the batch is stored first or not, no answer, and nobody
    /// responds for `down_us`.
    Restart { stored: bool, down_us: u64 },
    /// Atomic publish was switched off on the stream (an operator's change).
    AtomicDisabled,
}

/// One stored message.
#[derive(Debug, Clone)]
struct Stored {
    id: String,
    /// The line without its newline.
    payload: Vec<u8>,
    /// When it was stored, by the simulated clock.
    ts_us: u64,
}

/// What the stream went through (for the run's statistics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCounts {
    pub attempts: u64,
    pub batches_stored: u64,
    pub refused_stale: u64,
    pub refused_duplicate: u64,
    pub unclear_answers: u64,
    pub read_backs: u64,
    /// Read-backs that found another writer's messages: the writer was fenced.
    pub fences: u64,
    pub faults_fired: u64,
    pub interlopers: u64,
}

/// A second writer's commit, run in the middle of a group commit.
pub type Interloper = Box<dyn FnOnce() + Send>;

struct StreamState {
    messages: Vec<Stored>,
    /// Every message's line and newline, concatenated: the log its offsets address.
    bytes: Vec<u8>,
    /// Where each message's line ends in `bytes`.
    ends: Vec<u64>,
    /// Message id → when it was stored, for the duplicate window.
    ids: HashMap<String, u64>,
    duplicate_window_us: u64,
    /// Faults for the next publishing attempts, in order.
    faults: VecDeque<PublishFault>,
    /// The next read-back fails.
    fail_read_back: bool,
    /// Nobody responds before this time (a restarting server).
    down_until_us: u64,
    /// A second writer's commit, run before publishing attempt `.0` (counted from
    /// when it was armed).
    interloper: Option<(u64, Interloper)>,
    batches_sent: u64,
    counts: StreamCounts,
    rng: Rng,
}

/// One simulated stream; clones share it.
#[derive(Clone)]
pub struct Stream {
    inner: Arc<Mutex<StreamState>>,
    /// The simulated clock, in microseconds since the epoch (shared with the run).
    clock: Arc<AtomicU64>,
}

impl Stream {
    pub fn new(seed: u64, clock: Arc<AtomicU64>) -> Self {
        let mut rng = Rng::new(seed);
        let duplicate_window_us = if rng.percent(SHORT_WINDOW_PERCENT) {
            rng.range(DUPLICATE_WINDOW_SHORT_US_MIN, 4 * ACK_TIMEOUT_US)
        } else {
            DUPLICATE_WINDOW_US
        };
        Stream {
            inner: Arc::new(Mutex::new(StreamState {
                messages: Vec::new(),
                bytes: Vec::new(),
                ends: Vec::new(),
                ids: HashMap::new(),
                duplicate_window_us,
                faults: VecDeque::new(),
                fail_read_back: false,
                down_until_us: 0,
                interloper: None,
                batches_sent: 0,
                counts: StreamCounts::default(),
                rng,
            })),
            clock,
        }
    }

    fn state(&self) -> MutexGuard<'_, StreamState> {
        // The simulation is single-threaded; a poisoned lock means a panic already.
        self.inner.lock().expect("sim stream lock")
    }

    fn now_us(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    fn advance_us(&self, us: u64) {
        self.clock.fetch_add(us, Ordering::Relaxed);
    }

    /// The writer's handle.
    pub fn writer(&self) -> StreamWriter {
        let writer = format!("w{:016x}", self.state().rng.next_u64());
        StreamWriter {
            stream: self.clone(),
            publisher: Publisher::new(writer),
        }
    }

    /// A reader of the whole stream as a log, located anywhere (recovery's view, and
    /// the read side's for loading a snapshot).
    pub fn log(&self) -> StreamLog {
        StreamLog(self.clone())
    }

    /// The read side's consumer, delivering from `at` on.
    pub fn source(&self, at: LogCursor) -> StreamSource {
        StreamSource {
            stream: self.clone(),
            delivered: at.lines as usize,
        }
    }

    /// Faults for the next publishing attempts, in order.
    pub fn arm(&self, faults: &[PublishFault]) {
        self.state().faults.extend(faults);
    }

    /// The next read-back of a refused batch fails.
    pub fn arm_read_back_failure(&self) {
        self.state().fail_read_back = true;
    }

    /// Disarms what did not fire; true if anything was armed.
    pub fn disarm(&self) -> bool {
        let mut s = self.state();
        let armed = !s.faults.is_empty() || s.fail_read_back;
        s.faults.clear();
        s.fail_read_back = false;
        armed
    }

    /// Runs `commit` (a second writer's) right before the `attempt`-th publishing
    /// attempt from now (1: the next).
    pub fn arm_interloper(&self, attempt: u64, commit: Interloper) {
        let at = self.state().batches_sent + attempt;
        self.state().interloper = Some((at, commit));
    }

    /// The second writer's commit, if it has not run.
    pub fn take_interloper(&self) -> Option<Interloper> {
        self.state().interloper.take().map(|(_, commit)| commit)
    }

    /// The server restarts between two commits: nobody responds for `down_us`.
    pub fn restart(&self, down_us: u64) {
        let until = self.now_us() + down_us;
        let mut s = self.state();
        s.down_until_us = s.down_until_us.max(until);
    }

    /// Whether the server is down now.
    pub fn is_down(&self) -> bool {
        self.now_us() < self.state().down_until_us
    }

    /// Messages stored.
    pub fn len(&self) -> u64 {
        self.state().messages.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored line of message `seq` (without its newline).
    pub fn line(&self, seq: u64) -> Option<Vec<u8>> {
        let s = self.state();
        let i = usize::try_from(seq).ok()?.checked_sub(1)?;
        s.messages.get(i).map(|m| m.payload.clone())
    }

    /// Whether message `seq` holds `line` (without its newline).
    pub fn holds(&self, seq: u64, line: &[u8]) -> bool {
        let s = self.state();
        let i = (seq as usize).wrapping_sub(1);
        s.messages.get(i).is_some_and(|m| m.payload == line)
    }

    /// The message id stored with message `seq`.
    pub fn id(&self, seq: u64) -> Option<String> {
        let s = self.state();
        let i = usize::try_from(seq).ok()?.checked_sub(1)?;
        s.messages.get(i).map(|m| m.id.clone())
    }

    /// Every line and newline from message `from` (1-based) on, and the offset
    /// where message `from` starts.
    pub fn bytes_from(&self, from: u64) -> (Vec<u8>, u64) {
        let s = self.state();
        let start = match from {
            0 | 1 => 0,
            n => s.ends[(n - 2) as usize],
        };
        (s.bytes[start as usize..].to_vec(), start)
    }

    /// Where the log ends: the seq the next message gets, its byte offset.
    pub fn end(&self) -> LogCursor {
        let s = self.state();
        LogCursor {
            offset: s.bytes.len() as u64,
            lines: s.messages.len() as u64,
            next_seq: s.messages.len() as u64 + 1,
        }
    }

    pub fn counts(&self) -> StreamCounts {
        self.state().counts
    }

    /// The server's handling of one atomic batch (the checks a stream leader makes
    /// when the commit message arrives): all of it stored, or none.
    fn store(s: &mut StreamState, part: &[Outgoing], batch_id: &str, now_us: u64) -> Answer {
        if part.len() > BATCH_MESSAGES_MAX {
            return Answer::Refused(Refusal::Other, "batch too large".into());
        }
        let window = s.duplicate_window_us;
        if let Some(m) = part.iter().find(|m| {
            s.ids
                .get(&m.id)
                .is_some_and(|&at| now_us.saturating_sub(at) < window)
        }) {
            s.counts.refused_duplicate += 1;
            return Answer::Refused(
                Refusal::Duplicate,
                format!(
                    "atomic publish batch contains duplicate message id {}",
                    m.id
                ),
            );
        }
        let last = s.messages.len() as u64;
        if part[0].seq - 1 != last {
            s.counts.refused_stale += 1;
            return Answer::Refused(
                Refusal::WrongLastSequence,
                format!("wrong last sequence: {last}"),
            );
        }
        for m in part {
            s.messages.push(Stored {
                id: m.id.clone(),
                payload: m.payload.to_vec(),
                ts_us: now_us,
            });
            s.bytes.extend_from_slice(&m.payload);
            s.bytes.push(b'\n');
            let end = s.bytes.len() as u64;
            s.ends.push(end);
            s.ids.insert(m.id.clone(), now_us);
        }
        s.counts.batches_stored += 1;
        Answer::Ack {
            stream: STREAM_NAME.into(),
            seq: s.messages.len() as u64,
            batch_id: Some(batch_id.to_owned()),
            batch_size: Some(part.len() as u64),
        }
    }

    /// One publishing attempt of `part` under `batch_id`, with the next armed fault.
    fn publish(&self, part: &[Outgoing], batch_id: &str) -> Answer {
        // A second writer appends first, if one was armed for this attempt.
        let due = {
            let mut s = self.state();
            s.batches_sent += 1;
            let sent = s.batches_sent;
            match &s.interloper {
                Some((at, _)) if *at <= sent => s.interloper.take().map(|(_, c)| c),
                _ => None,
            }
        };
        if let Some(commit) = due {
            self.state().counts.interlopers += 1;
            commit();
        }
        let now = self.now_us();
        let mut s = self.state();
        s.counts.attempts += 1;
        let fault = s.faults.pop_front();
        if fault.is_some() {
            s.counts.faults_fired += 1;
        }
        let answer = if now < s.down_until_us {
            Answer::NoAnswer("no responders available for request".into())
        } else {
            match fault {
                None => Self::store(&mut s, part, batch_id, now),
                Some(PublishFault::LostMessage) => Answer::Refused(
                    Refusal::Incomplete,
                    "atomic publish batch is incomplete".into(),
                ),
                Some(PublishFault::LostBeforeStore) => {
                    drop(s);
                    self.advance_us(ACK_TIMEOUT_US);
                    return self.unclear(Answer::NoAnswer("timed out".into()));
                }
                Some(PublishFault::AckLost) => {
                    Self::store(&mut s, part, batch_id, now);
                    drop(s);
                    self.advance_us(ACK_TIMEOUT_US);
                    return self.unclear(Answer::NoAnswer("timed out".into()));
                }
                Some(PublishFault::BrokenAfterStore) => {
                    Self::store(&mut s, part, batch_id, now);
                    Answer::NoAnswer("broken pipe".into())
                }
                Some(PublishFault::Restart { stored, down_us }) => {
                    if stored {
                        Self::store(&mut s, part, batch_id, now);
                    }
                    s.down_until_us = now + down_us;
                    Answer::NoAnswer("broken pipe".into())
                }
                Some(PublishFault::AtomicDisabled) => {
                    Answer::Refused(Refusal::AtomicDisabled, "atomic publish is disabled".into())
                }
            }
        };
        drop(s);
        self.unclear(answer)
    }

    /// Counts an answer that leaves the outcome unclear, and hands it on.
    fn unclear(&self, answer: Answer) -> Answer {
        if matches!(
            answer,
            Answer::NoAnswer(_) | Answer::Refused(Refusal::Incomplete, _)
        ) {
            self.state().counts.unclear_answers += 1;
        }
        answer
    }

    /// How many of `part`, from the first on, are stored at their seqs with their
    /// payloads and message ids (the writer's read-back after a refusal).
    fn stored_at_their_seqs(&self, part: &[Outgoing]) -> io::Result<usize> {
        let mut s = self.state();
        s.counts.read_backs += 1;
        if std::mem::take(&mut s.fail_read_back) {
            s.counts.faults_fired += 1;
            return Err(io::Error::other("simulated read-back failure"));
        }
        let found = part
            .iter()
            .take_while(|m| {
                s.messages
                    .get((m.seq - 1) as usize)
                    .is_some_and(|stored| stored.payload == m.payload[..] && stored.id == m.id)
            })
            .count();
        if found < part.len() {
            s.counts.fences += 1;
        }
        Ok(found)
    }

    /// Performs the steps of a group commit, as `JetStreamStorage`'s driver does,
    /// timed by the simulated clock.
    fn drive(&self, mut commit: GroupCommit) -> GroupCommit {
        let started = self.now_us();
        loop {
            match commit.next() {
                Step::Publish(part) => {
                    let batch_id = format!("sim-batch-{}", self.state().rng.next_u64());
                    let answer = self.publish(&commit.messages()[part], &batch_id);
                    let elapsed = Duration::from_micros(self.now_us() - started);
                    commit.answered(answer, STREAM_NAME, &batch_id, elapsed);
                }
                Step::ReadBack(part) => {
                    let found = self.stored_at_their_seqs(&commit.messages()[part]);
                    commit.read_back(found);
                }
                Step::Pause(pause) => {
                    self.advance_us(pause.as_micros() as u64);
                    commit.paused();
                }
                Step::Done => return commit,
            }
        }
    }
}

/// The longest a group commit keeps retrying, in simulated microseconds.
pub const RETRY_WINDOW_US: u64 = PUBLISH_RETRY_WINDOW.as_micros() as u64;

fn read_at(bytes: &[u8], offset: u64, buf: &mut [u8]) -> usize {
    let start = (offset as usize).min(bytes.len());
    let n = buf.len().min(bytes.len() - start);
    buf[..n].copy_from_slice(&bytes[start..start + n]);
    n
}

/// By seq only, as a real stream checks (plumbing's `JetStreamReader::check_continues`).
fn check_continues(stream: &Stream, seq: u64) -> Result<(), String> {
    let last = stream.len();
    if last < seq {
        return Err(format!("the stream ends at seq {last}, before seq {seq}"));
    }
    Ok(())
}

/// The writer's connection to the stream: the same [`Publisher`] and
/// [`GroupCommit`] as `JetStreamStorage`, another driver.
pub struct StreamWriter {
    stream: Stream,
    publisher: Publisher,
}

impl Storage for StreamWriter {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.publisher.stage(bytes);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let Some(commit) = self.publisher.begin(BATCH_MESSAGES_MAX) else {
            return Ok(());
        };
        let commit = self.stream.drive(commit);
        self.publisher.settle(commit, STREAM_NAME)
    }

    fn publish_durable(&mut self, mark: Watermark) -> io::Result<()> {
        let staged = self.publisher.has_staged();
        self.sync()?;
        self.publisher.durable(mark, staged);
        Ok(())
    }
}

impl LogRead for StreamWriter {
    /// Not known without reading the whole stream, as on a real one.
    fn length(&mut self) -> io::Result<Option<u64>> {
        Ok(None)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        Ok(read_at(&self.stream.state().bytes, offset, buf))
    }

    fn check_continues(&mut self, seq: u64, _offset: u64) -> Result<(), String> {
        check_continues(&self.stream, seq)
    }
}

impl Recoverable for StreamWriter {
    /// A stream is never cut (a message is stored whole or not at all).
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the stream's last message (after byte {len}) is not a valid log line"),
        ))
    }
}

/// The whole stream read as a log.
pub struct StreamLog(Stream);

impl LogRead for StreamLog {
    fn length(&mut self) -> io::Result<Option<u64>> {
        Ok(None)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        Ok(read_at(&self.0.state().bytes, offset, buf))
    }

    fn check_continues(&mut self, seq: u64, _offset: u64) -> Result<(), String> {
        check_continues(&self.0, seq)
    }
}

/// The read side's consumer: delivers stored messages, in order, some late.
pub struct StreamSource {
    stream: Stream,
    /// Messages delivered so far (from the start of the stream).
    delivered: usize,
}

impl StreamSource {
    fn delivered_end(&self, s: &StreamState) -> u64 {
        match self.delivered {
            0 => 0,
            n => s.ends[n - 1],
        }
    }
}

impl LogRead for StreamSource {
    /// The end of what was delivered.
    fn length(&mut self) -> io::Result<Option<u64>> {
        let s = self.stream.state();
        Ok(Some(self.delivered_end(&s)))
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let s = self.stream.state();
        let end = self.delivered_end(&s) as usize;
        Ok(read_at(&s.bytes[..end], offset, buf))
    }
}

impl LogSource for StreamSource {
    /// Takes in some or all of what is stored; the mark is the end of what was
    /// delivered (everything stored is durable), its seq the stream's last seq.
    fn watermark(&mut self) -> io::Result<Option<Watermark>> {
        let mut s = self.stream.state();
        let stored = s.messages.len();
        if stored > self.delivered {
            let pending = (stored - self.delivered) as u64;
            self.delivered += if s.rng.percent(DELIVER_ALL_PERCENT) {
                pending as usize
            } else {
                s.rng.range(1, pending) as usize
            };
        }
        let ts_us = match self.delivered {
            0 => 0,
            n => s.messages[n - 1].ts_us,
        };
        Ok(Some(Watermark {
            seq: stored as u64,
            offset: self.delivered_end(&s),
            ts_us,
        }))
    }

    /// The simulator steps the tailer itself.
    fn watch(&mut self, _wake: SyncSender<()>) -> Option<Box<dyn Send>> {
        None
    }

    fn name(&self) -> String {
        "sim-stream".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in line: the stream reads only its seq and checksum.
    fn line(seq: u64, writer: u64) -> String {
        let crc = seq << 4 | writer;
        format!("{{\"seq\":{seq},\"w\":{writer},\"crc\":\"{crc:08x}\"}}\n")
    }

    fn lines(seqs: std::ops::RangeInclusive<u64>) -> String {
        seqs.map(|seq| line(seq, 0)).collect()
    }

    fn stream() -> Stream {
        Stream::new(7, Arc::new(AtomicU64::new(1_000_000)))
    }

    #[test]
    fn a_batch_is_stored_whole_at_the_end_it_expects_or_fenced() {
        let s = stream();
        let (mut a, mut b) = (s.writer(), s.writer());
        a.append(lines(1..=5).as_bytes()).unwrap();
        a.sync().unwrap();
        assert_eq!(s.len(), 5);
        let writer = a.publisher.writer().to_owned();
        assert_eq!(s.id(5), Some(format!("5-00000050-{writer}")));
        // Another writer's line for seq 4: fenced, nothing landed.
        let fenced = |b: &mut StreamWriter, bytes: &str| {
            b.append(bytes.as_bytes()).unwrap();
            let e = b.sync().unwrap_err();
            command_svc::storage::Fenced::of(&e)
                .expect("a fence")
                .landed
        };
        b.publisher.continue_after(3, lines(1..=3).len() as u64);
        assert_eq!(fenced(&mut b, &line(4, 1)), 0);
        // Another writer's line identical to the stored one: fenced all the same.
        b.publisher.continue_after(4, lines(1..=4).len() as u64);
        assert_eq!(fenced(&mut b, &lines(5..=5)), 0);
        // The same writer's line again (a retry of what landed): a duplicate, read
        // back, stored.
        b.publisher.continue_after(4, lines(1..=4).len() as u64);
        b.publisher.resume_as(&writer);
        b.append(lines(5..=5).as_bytes()).unwrap();
        b.sync().expect("a duplicate that landed");
        assert_eq!(s.len(), 5);
    }

    #[test]
    fn a_landed_batch_whose_ack_was_lost_counts_as_stored_once() {
        let s = stream();
        let mut a = s.writer();
        s.arm(&[PublishFault::AckLost]);
        a.append(lines(1..=2).as_bytes()).unwrap();
        a.sync()
            .expect("the retry is a duplicate, read back: stored");
        assert_eq!(s.len(), 2, "stored once");
        let c = s.counts();
        assert_eq!(
            (c.refused_duplicate + c.refused_stale, c.read_backs),
            (1, 1)
        );
    }

    #[test]
    fn an_outage_longer_than_the_retry_window_fails_the_commit() {
        let s = stream();
        let mut a = s.writer();
        s.restart(RETRY_WINDOW_US + 1_000_000);
        a.append(lines(1..=1).as_bytes()).unwrap();
        let e = a.sync().unwrap_err();
        assert!(command_svc::storage::Fenced::of(&e).is_none(), "{e}");
        assert!(e.to_string().contains("did not acknowledge"), "{e}");
        assert!(s.is_empty());
    }

    #[test]
    fn the_read_side_sees_only_what_is_stored() {
        let s = stream();
        let mut a = s.writer();
        a.append(lines(1..=4).as_bytes()).unwrap();
        a.sync().unwrap();
        let mut src = s.source(LogCursor::start());
        let mut last = 0;
        for _ in 0..64 {
            let mark = src.watermark().unwrap().unwrap();
            assert!(mark.offset >= last && mark.offset <= s.end().offset);
            assert_eq!(src.length().unwrap(), Some(mark.offset));
            last = mark.offset;
        }
        assert_eq!(last, s.end().offset, "delivered in the end");
    }
}
