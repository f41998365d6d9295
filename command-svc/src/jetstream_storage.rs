//! The JetStream log as the writer sees it (`--log nats://HOST:PORT/STREAM`):
//! [`JetStreamStorage`] implements [`Storage`] and [`Recoverable`], so the writer, its
//! group commit, snapshots and recovery are the same code as for the file. Recovery
//! reads the stream's tail through [`JetStreamReader`] (plumbing's `jetstream::reader`); appending
//! publishes.
//!
//! ## Subjects
//!
//! A line of a market (an event whose head names it, [`shared_events::peek_head`])
//! is published on that market's subject, `foldbook.<STREAM>.<SYMBOL>`; any other
//! line on the stream's base subject, `foldbook.<STREAM>`, which every reader takes
//! (as were all lines of builds before per-market subjects). A reader holding only
//! some markets consumes the base subject and its markets' only.
//!
//! ## Publishing
//!
//! `append` stages a group commit's lines; `sync` publishes them as one atomic batch
//! (ADR-50, nats-server 2.12 or later, `allow_atomic` on the stream): the server
//! stores all of a batch or none of it. A group commit longer than
//! [`ATOMIC_BATCH_MESSAGES_MAX`] is split into consecutive batches, each acknowledged
//! before the next is sent, so each one's fence is exact. Each line is one message
//! with:
//!
//! - `Nats-Msg-Id: <seq>-<crc>-<writer>`, derived from the seq, the line's checksum
//!   and this writer process's id (a NUID), so two writers' events for one seq never
//!   pass for each other, not even byte-identical ones: a batch holding a message
//!   already stored within the server's duplicate window is refused whole as a
//!   duplicate, so a retried batch never lands twice;
//! - `Nats-Batch-Id` (fresh for every attempt, so a retry never joins the remains of
//!   an earlier one) and `Nats-Batch-Sequence` (1, 2, … within the batch);
//!   `Nats-Batch-Commit: 1` on the last, the only message whose answer is awaited;
//! - on the first message only, `Nats-Expected-Last-Sequence: <seq - 1>`: the server
//!   refuses the batch unless the stream ends right before it, checked on the stream
//!   leader when it commits the batch. This fences out a second writer: whichever
//!   publishes a seq second is refused, so two writers never both get a seq, and as
//!   a batch lands whole, no message of it lands on top of another writer's.
//!
//! No `Nats-Expected-Last-Msg-Id`: the server refuses it in a batch, and it is not
//! needed (the batch is one unit). It was what left replicas behind: a clustered
//! nats-server checks it again when each replica applies a message, against a last
//! message id that catching up does not set.
//!
//! A 2xx is sent only after the batch's PubAck, which the server sends once the
//! batch is stored on a quorum of the stream's replicas (flushed to disk first with
//! the recommended `sync_interval: always`; docs/jetstream.md).
//!
//! ## Failures
//!
//! - Refused as stale (wrong last sequence): another writer appended first. `sync`
//!   reports [`Fenced`](crate::storage::Fenced) with how many of the group commit's
//!   events landed (checked against the stream, not taken from the acks alone: an
//!   earlier attempt of the refused batch may have landed); the writer answers
//!   those, reloads (its snapshot, then the stream's tail) and decides the rest
//!   again. The history never forks.
//! - Refused as a duplicate: an earlier attempt of the batch landed after all (its
//!   answer was lost). The stream is asked: if it holds the batch's lines at their
//!   seqs, the batch counts as stored and the next one goes out; if not, another
//!   writer's messages are there, which is a fence. The read-back compares each
//!   message's id as well as its line: another writer's identical line is not ours.
//! - Anything unclear (no answer in time, the connection lost, no responders while
//!   a cluster elects a leader, the batch incomplete at the server because a message
//!   of it was lost): the batch is published again under a new batch id, for up to
//!   [`PUBLISH_RETRY_WINDOW`] from the start of the group commit. If that does not
//!   settle it, `sync` fails: the batch gets 503 and the writer stops (fail-stop), so
//!   a restart reads the truth from the stream.
//! - Any other refusal (atomic publish switched off on the stream, a batch larger
//!   than the server allows) breaks what the start checked: `sync` fails at once.
//!
//! The decisions above (what an answer means, when to read back, retry or give up,
//! what landed) are the sans-IO [`crate::atomic_publish`], which the simulator's
//! stream drives too; this file is its I/O: async-nats, the wall clock, NUIDs.

pub use crate::atomic_publish::{
    ATOMIC_BATCH_MESSAGES_MAX, PUBLISH_RETRY_INTERVAL, PUBLISH_RETRY_WINDOW,
};
use crate::atomic_publish::{Answer, GroupCommit, Outgoing, Publisher, Refusal, Step};
use crate::storage::{Recoverable, Storage};
use async_nats::header::{self, HeaderMap};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use plumbing::jetstream::{
    JetStream, JetStreamAddress, JetStreamBounds, JetStreamError, JetStreamReader, OFFSET_HEADER,
};
use plumbing::lines::Position;
use shared_events::{LogCursor, LogRead, Watermark};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for JetStream to create or show the stream at start.
pub const STREAM_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A stream read as a log ([`LogRead`]), for recovery and `verify`: plumbing's
/// [`JetStreamReader`] reads the lines; this says what the log's interface needs of it.
#[derive(Debug)]
pub struct JetStreamLog(pub JetStreamReader);

impl LogRead for JetStreamLog {
    /// Not known without reading the whole stream.
    fn length(&mut self) -> io::Result<Option<u64>> {
        Ok(None)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_at(offset, buf)
    }

    fn locate(&mut self, at: LogCursor) {
        self.0.locate(Position {
            offset: at.offset,
            lines: at.lines,
            next_seq: at.next_seq,
        })
    }

    /// A stream continues a snapshot at `seq` when it holds `seq` events or more
    /// and has not lost the ones after it; the offset is not checked (a stream
    /// deleted and created again under the same name needs its snapshots deleted).
    fn check_continues(&mut self, seq: u64, _offset: u64) -> Result<(), String> {
        self.0.check_continues(seq)
    }
}

/// A JetStream stream as the writer's storage.
#[derive(Debug)]
pub struct JetStreamStorage {
    /// For recovery: the stream read as a log.
    log: JetStreamLog,
    /// Where the stream ends as this writer knows it, and the lines staged.
    publisher: Publisher,
}

impl JetStreamStorage {
    /// Creates the stream (with `replicas` copies) or checks the existing one, and
    /// returns storage ready for recovery.
    pub fn open(
        js: Arc<JetStream>,
        replicas: usize,
    ) -> Result<(Self, JetStreamBounds), JetStreamError> {
        let bounds = crate::jetstream_admin::ensure_stream(&js, replicas, STREAM_READY_TIMEOUT)?;
        if bounds.last_seq > 0 && bounds.first_seq != 1 {
            return Err(JetStreamError::Stream {
                url: js.url().to_string(),
                message: format!(
                    "the stream starts at seq {}: events 1..{} were removed; the log cannot be replayed",
                    bounds.first_seq,
                    bounds.first_seq - 1
                ),
            });
        }
        let storage = JetStreamStorage {
            log: JetStreamLog(JetStreamReader::new(js)),
            publisher: Publisher::new(nuid::next().to_string()),
        };
        Ok((storage, bounds))
    }

    fn js(&self) -> &Arc<JetStream> {
        self.log.0.jetstream()
    }

    /// Appends after seq `last_seq`, whose line ends at byte `end_offset`, without
    /// recovery (copying a log in: the caller checked what the stream holds).
    pub fn continue_after(&mut self, last_seq: u64, end_offset: u64) {
        self.publisher.continue_after(last_seq, end_offset);
    }

    /// This writer's id in its message ids.
    pub fn writer_id(&self) -> &str {
        self.publisher.writer()
    }

    /// Publishes as the writer `writer` (another storage's [`Self::writer_id`]) from
    /// here on: a process retrying what that writer may have published, for tests of
    /// the duplicate path.
    pub fn resume_as(&mut self, writer: &str) {
        self.publisher.resume_as(writer);
    }

    /// The line stored as message `seq`, if there is one.
    pub fn message(&self, seq: u64) -> io::Result<Option<Bytes>> {
        let js = self.js().clone();
        let (context, name) = (js.context().clone(), js.url().stream.clone());
        js.block_on(async move {
            let stream = context
                .get_stream_no_info(&name)
                .await
                .map_err(io::Error::other)?;
            Ok(stream.get_raw_message(seq).await.ok().map(|m| m.payload))
        })
    }

    /// Publishes the staged lines and waits for their acknowledgements.
    fn publish_staged(&mut self) -> io::Result<()> {
        let Some(commit) = self.publisher.begin(ATOMIC_BATCH_MESSAGES_MAX) else {
            return Ok(());
        };
        let js = self.js().clone();
        let (context, url, stream) = (
            js.context().clone(),
            js.url().clone(),
            js.url().stream.clone(),
        );
        let commit = js.block_on(publish_batch(context, url, stream, commit));
        self.publisher.settle(commit, &js.url().to_string())
    }
}

/// How many of `messages`, from the first on, the stream holds at their seqs, each
/// with its line and its message id.
async fn stored_at_their_seqs(
    context: &async_nats::jetstream::Context,
    stream: &str,
    messages: &[Outgoing],
) -> io::Result<usize> {
    let stream = context
        .get_stream_no_info(stream)
        .await
        .map_err(io::Error::other)?;
    let mut found = 0;
    for m in messages {
        match stream.get_raw_message(m.seq).await {
            Ok(message)
                if message.payload == m.payload
                    && message
                        .headers
                        .get(header::NATS_MESSAGE_ID)
                        .map(|id| id.as_str())
                        == Some(m.id.as_str()) =>
            {
                found += 1
            }
            _ => break,
        }
    }
    Ok(found)
}

/// Performs the steps of a group commit ([`GroupCommit`]): each atomic batch under a
/// fresh batch id, the read-backs, the pauses, timed by the wall clock.
async fn publish_batch(
    context: async_nats::jetstream::Context,
    url: JetStreamAddress,
    stream: String,
    mut commit: GroupCommit,
) -> GroupCommit {
    let started = Instant::now();
    loop {
        match commit.next() {
            Step::Publish(part) => {
                let batch_id = nuid::next().to_string();
                let part = &commit.messages()[part];
                let answer = publish_atomic(&context, &url, part, &batch_id).await;
                commit.answered(answer, &stream, &batch_id, started.elapsed());
            }
            Step::ReadBack(part) => {
                let part = &commit.messages()[part];
                let found = stored_at_their_seqs(&context, &stream, part).await;
                commit.read_back(found);
            }
            Step::Pause(pause) => {
                tokio::time::sleep(pause).await;
                commit.paused();
            }
            Step::Done => return commit,
        }
    }
}

/// One attempt at publishing `part` as one atomic batch under `batch_id`: every
/// message but the last sent without waiting, the last one commits the batch and its
/// answer says how all of them ended.
async fn publish_atomic(
    context: &async_nats::jetstream::Context,
    url: &JetStreamAddress,
    part: &[Outgoing],
    batch_id: &str,
) -> Answer {
    let client = context.client();
    let (last, rest) = part.split_last().expect("a batch has messages");
    let subject = |m: &Outgoing| subject_of(url, m);
    let headers = |i: usize, m: &Outgoing| {
        let mut headers = HeaderMap::new();
        headers.insert(OFFSET_HEADER, m.offset.to_string());
        headers.insert(header::NATS_MESSAGE_ID, m.id.as_str());
        headers.insert(header::NATS_BATCH_ID, batch_id);
        headers.insert(header::NATS_BATCH_SEQUENCE, (i + 1).to_string());
        if i == 0 {
            headers.insert(header::NATS_EXPECTED_LAST_SEQUENCE, (m.seq - 1).to_string());
        }
        headers
    };
    for (i, m) in rest.iter().enumerate() {
        let sent = client
            .publish_with_headers(subject(m), headers(i, m), m.payload.clone())
            .await;
        if let Err(e) = sent {
            return Answer::NoAnswer(format!("publishing seq {}: {e}", m.seq));
        }
    }
    let mut commit = headers(rest.len(), last);
    commit.insert(header::NATS_BATCH_COMMIT, header::NATS_BATCH_COMMIT_FINAL);
    let message = PublishMessage::build()
        .payload(last.payload.clone())
        .headers(commit);
    let ack = match context.send_publish(subject(last), message).await {
        Ok(ack) => ack,
        Err(e) => return Answer::NoAnswer(format!("publishing seq {}: {e}", last.seq)),
    };
    match ack.await {
        Ok(ack) => Answer::Ack {
            stream: ack.stream,
            seq: ack.sequence,
            batch_id: ack.batch_id,
            batch_size: ack.batch_size,
        },
        Err(e) => answer_of(&e),
    }
}

/// The subject `m` is published on: its market's, or the stream's base subject.
pub fn subject_of(url: &JetStreamAddress, m: &Outgoing) -> String {
    match m.market {
        Some(market) => url.subject_of(market.as_str()),
        None => url.subject.clone(),
    }
}

/// What a failed publish means, in the terms of [`crate::atomic_publish`].
fn answer_of(e: &PublishError) -> Answer {
    let refused = |why| Answer::Refused(why, e.to_string());
    if e.kind() == PublishErrorKind::WrongLastSequence {
        return refused(Refusal::WrongLastSequence);
    }
    match refusal(e) {
        Some(ErrorCode::ATOMIC_PUBLISH_CONTAINS_DUPLICATE_MESSAGE) => refused(Refusal::Duplicate),
        Some(
            ErrorCode::ATOMIC_PUBLISH_INCOMPLETE_BATCH
            | ErrorCode::ATOMIC_PUBLISH_TOO_MANY_INFLIGHT,
        ) => refused(Refusal::Incomplete),
        Some(ErrorCode::ATOMIC_PUBLISH_DISABLED) => refused(Refusal::AtomicDisabled),
        Some(_) => refused(Refusal::Other),
        None => match e.kind() {
            PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::StreamNotFound
            | PublishErrorKind::MaxAckPending => Answer::NoAnswer(e.to_string()),
            _ => Answer::Failed(e.to_string()),
        },
    }
}

/// The JetStream error code of a refused publish, if the server sent one.
fn refusal(e: &PublishError) -> Option<ErrorCode> {
    std::error::Error::source(e)?
        .downcast_ref::<async_nats::jetstream::Error>()
        .map(|e| e.error_code())
}

impl Storage for JetStreamStorage {
    /// Stages the lines of `bytes` for the next sync ([`Publisher::stage`]).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.publisher.stage(bytes);
        Ok(())
    }

    /// Publishes what was appended and waits for the acks: durable from here on.
    fn sync(&mut self) -> io::Result<()> {
        self.publish_staged()
    }

    /// Readers follow the stream itself, so there is nothing to publish: this only
    /// makes sure nothing staged is left (with `--fsync never` there was no sync), and
    /// at the end of recovery learns where the stream ends and stops reading it.
    fn publish_durable(&mut self, mark: Watermark) -> io::Result<()> {
        let staged = self.publisher.has_staged();
        self.publish_staged()?;
        self.publisher.durable(mark, staged);
        self.log.0.close();
        Ok(())
    }
}

impl LogRead for JetStreamStorage {
    fn length(&mut self) -> io::Result<Option<u64>> {
        self.log.length()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.log.read_at(offset, buf)
    }

    fn locate(&mut self, at: LogCursor) {
        self.log.locate(at)
    }

    fn check_continues(&mut self, seq: u64, offset: u64) -> Result<(), String> {
        self.log.check_continues(seq, offset)
    }
}

impl Recoverable for JetStreamStorage {
    /// A stream is never cut: a bad last message is not a torn write (a message is
    /// stored whole or not at all), so recovery refuses to start.
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: the stream's last message (after byte {len}) is not a valid log line; \
                 a stream cannot be cut, and a message is stored whole or not at all, so this is corruption",
                self.js().url()
            ),
        ))
    }
}
