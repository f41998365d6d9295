//! What the writer decides when it publishes a group commit to a stream, without the
//! I/O: the sans-IO half of the JetStream write path. [`Publisher`] stages the
//! appended lines (each with its seq and `Nats-Msg-Id`) and settles a group commit's
//! outcome into the writer's answer (stored, [`Fenced`] with how many landed, or a
//! failure); [`GroupCommit`] is the state machine between the two: which atomic
//! batch to publish next, what the server's [`Answer`] to it means, when to read the
//! stream back, when to retry under a new batch id, and when to give up.
//!
//! Two drivers perform its [`Step`]s: the real one in `jetstream_storage.rs`
//! (async-nats, the wall clock, a fresh NUID per attempt) and the simulator's stream
//! (`foldbook-sim`, a seeded server model and a simulated clock), so the simulation
//! tests this code, not a copy of it. The rules are in `jetstream_storage.rs`'s
//! module docs ("Publishing", "Failures").

use crate::storage::Fenced;
use bytes::Bytes;
use shared_events::Watermark;
use std::io;
use std::ops::Range;
use std::time::Duration;

/// How long unclear publish failures are retried before the writer gives up (a
/// cluster that lost its stream leader elects another within seconds).
pub const PUBLISH_RETRY_WINDOW: Duration = Duration::from_secs(20);
/// Pause between two publishing attempts of the same batch.
pub const PUBLISH_RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// Most messages in one atomic batch: nats-server's default limit
/// (`jetstream { limits { batch { max_msgs } } }`, which must not be set lower). A
/// longer group commit is published as consecutive batches.
pub const ATOMIC_BATCH_MESSAGES_MAX: usize = 1000;

/// One line to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The seq it must get: the stream's sequence of its message.
    pub seq: u64,
    /// `Nats-Msg-Id`: `<seq>-<crc>-<writer>`.
    pub id: String,
    /// Where the line starts in the log (its `Foldbook-Offset` header): the lines
    /// before it, each with its newline, as in the file.
    pub offset: u64,
    /// The market whose subject it goes to (`None`: the stream's base subject, which
    /// every reader takes): the market its head names ([`shared_events::peek_head`]),
    /// so a line goes to a market's subject exactly when a reader holding other
    /// markets would only check its head and move past it.
    pub market: Option<shared_events::Symbol>,
    /// The line without its newline.
    pub payload: Bytes,
}

/// What the server answered to the commit message of one atomic batch, in the
/// terms the decisions need (the real driver maps async-nats' errors to these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A PubAck.
    Ack {
        stream: String,
        /// The stream sequence of the batch's last message.
        seq: u64,
        batch_id: Option<String>,
        batch_size: Option<u64>,
    },
    /// A refusal by the server, with its message.
    Refused(Refusal, String),
    /// No answer: sending failed, the wait timed out, the connection broke, nobody
    /// responded (a cluster electing a stream leader), too many acks pending. The
    /// batch may or may not have been stored.
    NoAnswer(String),
    /// Any other client error.
    Failed(String),
}

/// Why the server refused a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The stream does not end where the first message expects: another writer
    /// appended (or an earlier attempt of this batch landed).
    WrongLastSequence,
    /// One of the batch's message ids is already stored within the duplicate window.
    Duplicate,
    /// The batch is incomplete at the server (a message of it was lost), or too many
    /// batches are in flight: nothing of it was stored.
    Incomplete,
    /// Atomic publish is switched off on the stream.
    AtomicDisabled,
    /// Anything else the server refuses.
    Other,
}

/// How one attempt at publishing one atomic batch ended, judged from its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The server committed the batch, each message at its seq.
    Stored,
    /// Refused: the stream does not end where the batch's first message expects.
    Fenced(String),
    /// Refused whole: one of its message ids is already stored in the window.
    Duplicate(String),
    /// No certainty: nothing or all of it may have landed; try again under a new id.
    Retry(String),
    /// An answer that breaks what the start checked; retrying will not help.
    Broken(String),
}

/// Judges the answer to an attempt at publishing `part` under `batch_id` to the
/// stream called `stream`. An ack counts only if it is for exactly this batch.
pub fn judge(answer: Answer, stream: &str, part: &[Outgoing], batch_id: &str) -> Attempt {
    let (first, last) = (
        part.first().expect("a batch has messages"),
        part.last().expect("a batch has messages"),
    );
    let seqs = format!("seqs {}..={}", first.seq, last.seq);
    match answer {
        Answer::Ack {
            stream: acked_stream,
            seq,
            batch_id: acked_id,
            batch_size,
        } => {
            if acked_stream == stream
                && seq == last.seq
                && acked_id.as_deref() == Some(batch_id)
                && batch_size == Some(part.len() as u64)
            {
                Attempt::Stored
            } else {
                Attempt::Broken(format!(
                    "batch {batch_id} ({seqs}) was acknowledged as {} messages ending at seq {seq} of {acked_stream}, batch {acked_id:?}",
                    batch_size.unwrap_or(0),
                ))
            }
        }
        Answer::Refused(Refusal::WrongLastSequence, e) => {
            Attempt::Fenced(format!("{seqs} refused: {e}"))
        }
        Answer::Refused(Refusal::Duplicate, e) => {
            Attempt::Duplicate(format!("{seqs} refused as a duplicate: {e}"))
        }
        Answer::Refused(Refusal::Incomplete, e) => Attempt::Retry(format!("{seqs}: {e}")),
        Answer::Refused(Refusal::AtomicDisabled, _) => Attempt::Broken(format!(
            "{seqs} refused: atomic publish is no longer allowed on the stream (`allow_atomic`); \
             a restart of command-svc allows it again"
        )),
        Answer::Refused(Refusal::Other, e) | Answer::Failed(e) => {
            Attempt::Broken(format!("{seqs} refused: {e}"))
        }
        Answer::NoAnswer(e) => Attempt::Retry(format!("no acknowledgement for {seqs}: {e}")),
    }
}

/// How publishing a group commit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Every message is stored, each at its seq.
    All,
    /// Another writer's message is where ours should be; the first `landed` are ours.
    Fenced { landed: usize, reason: String },
    /// No certainty within the retry window, or an answer that breaks the rules.
    Unclear { reason: String },
}

/// What the driver does next for a [`GroupCommit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Publish these messages (indices into [`GroupCommit::messages`]) as one atomic
    /// batch under a fresh batch id, then report with [`GroupCommit::answered`].
    Publish(Range<usize>),
    /// Read the stream back: how many of these messages, from the first on, does it
    /// hold at their seqs, each with its payload and its message id (so another
    /// writer's identical line does not pass for ours)? Report with
    /// [`GroupCommit::read_back`].
    ReadBack(Range<usize>),
    /// Wait this long, then call [`GroupCommit::next`] again.
    Pause(Duration),
    /// Finished: [`GroupCommit::finish`] says how.
    Done,
}

/// Where a group commit is.
#[derive(Debug)]
enum Phase {
    Publish,
    /// An unclear attempt: pause, then publish again.
    Pause,
    /// Refused as stale or as a duplicate (the reason): does the stream hold it?
    ReadBack(String),
    Done(Published),
}

/// One group commit on its way to the stream: consecutive atomic batches of at most
/// `parts_max` messages, each acknowledged before the next is sent, each retried under
/// a new batch id after unclear answers until [`PUBLISH_RETRY_WINDOW`] from the start.
#[derive(Debug)]
pub struct GroupCommit {
    batch: Vec<Outgoing>,
    /// Most messages per atomic batch ([`ATOMIC_BATCH_MESSAGES_MAX`] on a real server).
    parts_max: usize,
    /// Messages known stored, from the first on.
    stored: usize,
    /// Publishing attempts so far.
    attempts: u32,
    phase: Phase,
}

impl GroupCommit {
    /// A group commit of `batch` (not empty), in atomic batches of at most `parts_max`.
    pub fn new(batch: Vec<Outgoing>, parts_max: usize) -> Self {
        assert!(!batch.is_empty() && parts_max > 0, "something to publish");
        GroupCommit {
            batch,
            parts_max,
            stored: 0,
            attempts: 0,
            phase: Phase::Publish,
        }
    }

    /// Every message of the group commit, in seq order.
    pub fn messages(&self) -> &[Outgoing] {
        &self.batch
    }

    /// Publishing attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    fn part(&self) -> Range<usize> {
        self.stored..self.batch.len().min(self.stored + self.parts_max)
    }

    /// What to do next.
    pub fn next(&self) -> Step {
        match &self.phase {
            Phase::Publish => Step::Publish(self.part()),
            Phase::Pause => Step::Pause(PUBLISH_RETRY_INTERVAL),
            Phase::ReadBack(_) => Step::ReadBack(self.part()),
            Phase::Done(_) => Step::Done,
        }
    }

    /// The answer to the [`Step::Publish`] just performed under `batch_id`, to the
    /// stream called `stream`, `elapsed` after the group commit began.
    pub fn answered(&mut self, answer: Answer, stream: &str, batch_id: &str, elapsed: Duration) {
        let Step::Publish(part) = self.next() else {
            panic!("an answer without a publish");
        };
        self.attempts += 1;
        self.phase = match judge(answer, stream, &self.batch[part.clone()], batch_id) {
            Attempt::Stored => {
                self.stored = part.end;
                self.after_stored()
            }
            Attempt::Fenced(reason) | Attempt::Duplicate(reason) => Phase::ReadBack(reason),
            Attempt::Broken(reason) => Phase::Done(Published::Unclear { reason }),
            Attempt::Retry(reason) if elapsed >= PUBLISH_RETRY_WINDOW => {
                let reason = format!(
                    "JetStream did not acknowledge the batch within {PUBLISH_RETRY_WINDOW:?} ({} attempts): {reason}",
                    self.attempts
                );
                Phase::Done(Published::Unclear { reason })
            }
            Attempt::Retry(reason) => {
                if self.attempts == 1 {
                    tracing::warn!(%reason, "publishing to JetStream: retrying the batch");
                }
                Phase::Pause
            }
        };
    }

    /// The [`Step::Pause`] is over.
    pub fn paused(&mut self) {
        assert!(matches!(self.phase, Phase::Pause), "a pause was asked for");
        self.phase = Phase::Publish;
    }

    /// The result of the [`Step::ReadBack`] just performed: how many of the part's
    /// messages, from the first on, the stream holds at their seqs. All of them: an
    /// earlier attempt landed after all, go on. Fewer: another writer's messages are
    /// there, a fence.
    pub fn read_back(&mut self, found: io::Result<usize>) {
        let (Step::ReadBack(part), Phase::ReadBack(refusal)) = (
            self.next(),
            std::mem::replace(&mut self.phase, Phase::Publish),
        ) else {
            panic!("a read back without a refusal");
        };
        self.phase = match found {
            Ok(found) if found == part.len() => {
                self.stored = part.end;
                self.after_stored()
            }
            Ok(found) => {
                assert!(found < part.len(), "found more than was looked for");
                Phase::Done(Published::Fenced {
                    landed: self.stored + found,
                    reason: refusal,
                })
            }
            Err(e) => Phase::Done(Published::Unclear {
                reason: format!("{refusal}; then reading the stream back: {e}"),
            }),
        };
    }

    fn after_stored(&self) -> Phase {
        if self.stored < self.batch.len() {
            return Phase::Publish;
        }
        let parts = self.batch.len().div_ceil(self.parts_max);
        if self.attempts as usize > parts {
            tracing::info!(
                attempts = self.attempts,
                events = self.batch.len(),
                "batch acknowledged after retries"
            );
        }
        Phase::Done(Published::All)
    }

    /// How it ended, once [`Step::Done`].
    pub fn finish(self) -> (Vec<Outgoing>, Published) {
        match self.phase {
            Phase::Done(published) => (self.batch, published),
            _ => panic!("finish before Step::Done"),
        }
    }
}

/// The writer's side of a stream: where it ends as this writer knows it, and the
/// lines appended since the last sync. `append` stages, `sync` begins a
/// [`GroupCommit`] and settles its outcome.
///
/// Every message id names the writer (`<seq>-<crc>-<writer>`): a retry of this
/// writer's own batch is a duplicate, and its read-back finds its own messages; but
/// two writers that decide byte-identical lines for one seq (the same event at the
/// same microsecond) never pass for each other, so no two clients are answered
/// for one event. The simulator found that case (docs/simulation.md).
#[derive(Debug)]
pub struct Publisher {
    /// This writer's id in its message ids: unique per writer process.
    writer: String,
    /// The stream's last seq as this writer knows it: set at the end of recovery,
    /// moved on by every stored batch.
    last_seq: u64,
    /// Where the line after `last_seq` starts: the log's length in bytes.
    end_offset: u64,
    /// Lines appended since the last sync, not published yet.
    staged: Vec<Outgoing>,
}

impl Publisher {
    /// A publisher whose message ids carry `writer` (unique per writer process, e.g.
    /// a NUID), appending after seq 0 until told otherwise.
    pub fn new(writer: impl Into<String>) -> Self {
        Publisher {
            writer: writer.into(),
            last_seq: 0,
            end_offset: 0,
            staged: Vec::new(),
        }
    }

    /// This writer's id in its message ids.
    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// Publishes as the writer `writer` from here on: a process that retries what
    /// an attempt of that writer may have published (tests of the duplicate path).
    pub fn resume_as(&mut self, writer: &str) {
        assert!(self.staged.is_empty(), "nothing staged");
        writer.clone_into(&mut self.writer);
    }

    /// The stream's last seq as this writer knows it.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Where the line after [`Self::last_seq`] starts.
    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }

    /// Appends after seq `last_seq`, whose line ends at byte `end_offset`, without
    /// recovery (copying a log in: the caller checked what the stream holds).
    pub fn continue_after(&mut self, last_seq: u64, end_offset: u64) {
        assert!(self.staged.is_empty(), "nothing staged");
        self.last_seq = last_seq;
        self.end_offset = end_offset;
    }

    /// Stages the lines of `bytes` (whole lines, each ending in a newline) for the
    /// next sync, checking that each carries the seq it will get in the stream.
    pub fn stage(&mut self, bytes: &[u8]) {
        let mut offset = self
            .staged
            .last()
            .map_or(self.end_offset, |m| m.offset + m.payload.len() as u64 + 1);
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let line = line
                .strip_suffix(b"\n")
                .expect("the writer appends whole lines");
            let seq = self.last_seq + self.staged.len() as u64 + 1;
            let prefix = format!("{{\"seq\":{seq},");
            assert!(
                line.starts_with(prefix.as_bytes()),
                "the writer's next line must carry seq {seq}, the stream's next"
            );
            // The line ends with `,"crc":"XXXXXXXX"}`.
            let crc = std::str::from_utf8(&line[line.len() - 10..line.len() - 2])
                .expect("a line's checksum is hex");
            // The writer's lines are valid and laid out as peek_head reads them; a
            // line it does not read goes where every reader takes it.
            let market = shared_events::peek_head(line)
                .ok()
                .flatten()
                .map(|h| h.market);
            self.staged.push(Outgoing {
                seq,
                id: format!("{seq}-{crc}-{}", self.writer),
                offset,
                market,
                payload: Bytes::copy_from_slice(line),
            });
            offset += line.len() as u64 + 1;
        }
    }

    /// Whether lines are staged.
    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    /// The group commit of what is staged, in batches of at most `parts_max`; `None`
    /// when nothing is.
    pub fn begin(&mut self, parts_max: usize) -> Option<GroupCommit> {
        (!self.staged.is_empty())
            .then(|| GroupCommit::new(std::mem::take(&mut self.staged), parts_max))
    }

    /// The writer's answer to a finished group commit (the stream called `shown` in
    /// messages): `Ok` when all of it is stored; a [`Fenced`] error with how many
    /// landed; any other error for no certainty (the writer stops).
    pub fn settle(&mut self, commit: GroupCommit, shown: &str) -> io::Result<()> {
        let (batch, published) = commit.finish();
        let mut moved_on = |stored: &[Outgoing]| {
            if let Some(last) = stored.last() {
                self.last_seq = last.seq;
                self.end_offset = last.offset + last.payload.len() as u64 + 1;
            }
        };
        match published {
            Published::All => {
                moved_on(&batch);
                Ok(())
            }
            Published::Fenced { landed, reason } => {
                moved_on(&batch[..landed]);
                tracing::warn!(
                    url = %shown,
                    landed,
                    refused = batch.len() - landed,
                    %reason,
                    "another writer appended to the stream first"
                );
                Err(io::Error::other(Fenced {
                    landed: landed as u64,
                    message: reason,
                }))
            }
            Published::Unclear { reason } => Err(io::Error::other(reason)),
        }
    }

    /// The writer says the log is durable up to `mark` (after recovery, or after a
    /// commit). `published_now`: what was staged was just published by the caller,
    /// so the mark must be the stream's end as this writer knows it.
    pub fn durable(&mut self, mark: Watermark, published_now: bool) {
        assert!(self.staged.is_empty(), "nothing is left staged");
        if published_now {
            assert_eq!(
                (self.last_seq, self.end_offset),
                (mark.seq, mark.offset),
                "the durable mark is the stream's end"
            );
        }
        self.last_seq = mark.seq;
        self.end_offset = mark.offset;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: u64) -> Vec<Outgoing> {
        (1..=n)
            .map(|seq| Outgoing {
                seq,
                id: format!("{seq}-00000000"),
                offset: (seq - 1) * 7,
                market: None,
                payload: Bytes::from(format!("line {seq}")),
            })
            .collect()
    }

    fn ack(seq: u64, id: &str, size: u64) -> Answer {
        Answer::Ack {
            stream: "S".into(),
            seq,
            batch_id: Some(id.into()),
            batch_size: Some(size),
        }
    }

    #[test]
    fn a_long_group_commit_goes_out_in_parts_each_acknowledged() {
        let mut c = GroupCommit::new(batch(5), 2);
        for (range, id) in [(0..2, "a"), (2..4, "b"), (4..5, "c")] {
            assert_eq!(c.next(), Step::Publish(range.clone()));
            let last = c.messages()[range.end - 1].seq;
            c.answered(ack(last, id, range.len() as u64), "S", id, Duration::ZERO);
        }
        assert_eq!(c.next(), Step::Done);
        assert_eq!(c.finish().1, Published::All);
    }

    #[test]
    fn an_ack_for_another_batch_is_broken() {
        let mut c = GroupCommit::new(batch(2), 10);
        c.answered(ack(2, "other", 2), "S", "mine", Duration::ZERO);
        assert!(matches!(c.finish().1, Published::Unclear { .. }));
    }

    #[test]
    fn unclear_answers_are_retried_within_the_window_then_given_up() {
        let mut c = GroupCommit::new(batch(1), 10);
        c.answered(
            Answer::NoAnswer("timed out".into()),
            "S",
            "a",
            Duration::ZERO,
        );
        assert_eq!(c.next(), Step::Pause(PUBLISH_RETRY_INTERVAL));
        c.paused();
        assert_eq!(c.next(), Step::Publish(0..1));
        c.answered(
            Answer::Refused(Refusal::Incomplete, "incomplete".into()),
            "S",
            "b",
            PUBLISH_RETRY_WINDOW,
        );
        let (_, published) = c.finish();
        assert!(
            matches!(&published, Published::Unclear { reason } if reason.contains("2 attempts")),
            "{published:?}"
        );
    }

    #[test]
    fn a_refusal_is_settled_by_reading_the_stream_back() {
        // A duplicate whose lines are there: stored; the next part goes out.
        let mut c = GroupCommit::new(batch(4), 2);
        c.answered(
            Answer::Refused(Refusal::Duplicate, "dup".into()),
            "S",
            "a",
            Duration::ZERO,
        );
        assert_eq!(c.next(), Step::ReadBack(0..2));
        c.read_back(Ok(2));
        assert_eq!(c.next(), Step::Publish(2..4));
        // The second part meets another writer: fenced with the first part landed.
        c.answered(
            Answer::Refused(Refusal::WrongLastSequence, "stale".into()),
            "S",
            "b",
            Duration::ZERO,
        );
        c.read_back(Ok(0));
        let mut p = Publisher::new("W");
        let e = p.settle(c, "S").unwrap_err();
        assert_eq!(Fenced::of(&e).map(|f| f.landed), Some(2));
        assert_eq!(p.last_seq(), 2);
    }

    #[test]
    fn staging_names_each_line_by_seq_and_checksum() {
        let mut p = Publisher::new("W");
        p.continue_after(6, 600);
        p.stage(b"{\"seq\":7,\"x\":1,\"crc\":\"0a0b0c0d\"}\n");
        p.stage(b"{\"seq\":8,\"crc\":\"ffffffff\"}\n");
        let c = p.begin(ATOMIC_BATCH_MESSAGES_MAX).expect("staged");
        let ids: Vec<_> = c.messages().iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["7-0a0b0c0d-W", "8-ffffffff-W"]);
        // Each line's offset follows the lines before it, across stagings.
        let offsets: Vec<_> = c.messages().iter().map(|m| m.offset).collect();
        assert_eq!(offsets, [600, 600 + 33]);
        assert!(p.begin(1).is_none());
        assert_eq!(c.messages()[0].market, None, "not a line peek_head reads");
    }

    #[test]
    fn each_line_goes_to_its_markets_subject_and_the_offset_moves_with_what_landed() {
        // A line as the writer writes it (shared-events' format docs), as seq 1.
        let placed = br#"{"seq":1,"ts_us":1795333664700544,"v":2,"event":{"type":"OrderPlaced","data":{"market":"FOLD","order":{"id":16,"user":"zed","side":"buy","price":101,"qty":8},"fills":[{"maker_id":5,"maker_user":"erin","price":101,"qty":7},{"maker_id":8,"maker_user":"heidi","price":101,"qty":1}],"resting_qty":0}},"crc":"0362290f"}"#;
        let head = shared_events::peek_head(placed).expect("a valid line");
        let mut p = Publisher::new("W");
        let mut bytes = placed.to_vec();
        bytes.push(b'\n');
        bytes.extend_from_slice(b"{\"seq\":2,\"crc\":\"ffffffff\"}\n");
        p.stage(&bytes);
        let mut c = p.begin(10).expect("staged");
        let m = c.messages();
        // The subject is the market peek_head reads (a reader holding others moves
        // past exactly these lines), and the base subject for any other line.
        assert_eq!(m[0].market, head.map(|h| h.market));
        if let Some(head) = head {
            assert_eq!(head.market.to_string(), "FOLD");
        }
        assert_eq!(m[1].market, None);
        assert_eq!((m[0].offset, m[1].offset), (0, placed.len() as u64 + 1));
        // Fenced after the first landed: the stream ends after it.
        c.answered(
            Answer::Refused(Refusal::WrongLastSequence, "stale".into()),
            "S",
            "a",
            Duration::ZERO,
        );
        c.read_back(Ok(1));
        assert!(p.settle(c, "S").is_err());
        assert_eq!((p.last_seq(), p.end_offset()), (1, placed.len() as u64 + 1));
    }
}
