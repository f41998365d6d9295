//! The JetStream log as the writer sees it (`--log nats://HOST:PORT/STREAM`):
//! [`JetStreamStorage`] implements [`Storage`] and [`Recoverable`], so the writer, its
//! group commit, snapshots and recovery are the same code as for the file. Recovery
//! reads the stream's tail through [`JetStreamReader`] (plumbing's `jetstream::reader`); appending
//! publishes.
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
//! - `Nats-Msg-Id: <seq>-<crc>`, derived from the seq (and the line's checksum, so
//!   two writers' different events for one seq never pass for each other): a batch
//!   holding a message already stored within the server's duplicate window is refused
//!   whole as a duplicate, so a retried batch never lands twice;
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
//!   reports [`Fenced`] with how many of the group commit's events landed (checked
//!   against the stream, not taken from the acks alone: an earlier attempt of the
//!   refused batch may have landed); the writer answers those, reloads (its snapshot,
//!   then the stream's tail) and decides the rest again. The history never forks.
//! - Refused as a duplicate: an earlier attempt of the batch landed after all (its
//!   answer was lost). The stream is asked: if it holds the batch's lines at their
//!   seqs, the batch counts as stored and the next one goes out; if not, another
//!   writer's messages are there, which is a fence.
//! - Anything unclear (no answer in time, the connection lost, no responders while
//!   a cluster elects a leader, the batch incomplete at the server because a message
//!   of it was lost): the batch is published again under a new batch id, for up to
//!   [`PUBLISH_RETRY_WINDOW`] from the start of the group commit. If that does not
//!   settle it, `sync` fails: the batch gets 503 and the writer stops (fail-stop), so
//!   a restart reads the truth from the stream.
//! - Any other refusal (atomic publish switched off on the stream, a batch larger
//!   than the server allows) breaks what the start checked: `sync` fails at once.

use crate::storage::{Fenced, Recoverable, Storage};
use async_nats::header::{self, HeaderMap};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use plumbing::jetstream::{JetStream, JetStreamBounds, JetStreamError, JetStreamReader};
use plumbing::lines::Position;
use shared_events::{LogCursor, LogRead, Watermark};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long unclear publish failures are retried before the writer gives up (a
/// cluster that lost its stream leader elects another within seconds).
pub const PUBLISH_RETRY_WINDOW: Duration = Duration::from_secs(20);
/// Pause between two publishing attempts of the same batch.
pub const PUBLISH_RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// Longest wait for JetStream to create or show the stream at start.
pub const STREAM_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Most messages in one atomic batch: nats-server's default limit
/// (`jetstream { limits { batch { max_msgs } } }`, which must not be set lower). A
/// longer group commit is published as consecutive batches.
pub const ATOMIC_BATCH_MESSAGES_MAX: usize = 1000;

/// One line to publish.
#[derive(Debug, Clone)]
struct Outgoing {
    seq: u64,
    /// `Nats-Msg-Id`.
    id: String,
    /// The line without its newline.
    payload: Bytes,
}

/// How publishing a group commit ended.
enum Published {
    /// Every message is stored, each at its seq.
    All,
    /// Another writer's message is where ours should be; the first `landed` are ours.
    Fenced { landed: usize, reason: String },
    /// No certainty within the retry window, or an answer that breaks the rules.
    Unclear { reason: String },
}

/// How one attempt at publishing one atomic batch ended.
enum Attempt {
    /// The server committed the batch, each message at its seq.
    Stored,
    /// Refused: the stream does not end where the batch's first message expects.
    Fenced(String),
    /// Refused whole: one of its message ids is already stored in the window.
    Duplicate(String),
    /// No certainty (no answer, the connection lost, the batch incomplete at the
    /// server): nothing or all of it may have landed; try again under a new id.
    Retry(String),
    /// An answer that breaks what the start checked; retrying will not help.
    Broken(String),
}

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
    /// The stream's last seq as this writer knows it: set at the end of recovery,
    /// moved on by every acknowledged batch.
    last_seq: u64,
    /// Lines appended since the last sync, not published yet.
    staged: Vec<Outgoing>,
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
            last_seq: 0,
            staged: Vec::new(),
        };
        Ok((storage, bounds))
    }

    fn js(&self) -> &Arc<JetStream> {
        self.log.0.jetstream()
    }

    /// Appends after seq `last_seq`, without recovery (copying a log in: the caller
    /// checked what the stream holds).
    pub fn continue_after(&mut self, last_seq: u64) {
        assert!(self.staged.is_empty(), "nothing staged");
        self.last_seq = last_seq;
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
        if self.staged.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.staged);
        let js = self.js().clone();
        let (context, subject, stream) = (
            js.context().clone(),
            js.subject().to_owned(),
            js.url().stream.clone(),
        );
        let (batch, published) = js.block_on(publish_batch(context, subject, stream, batch));
        match published {
            Published::All => {
                self.last_seq += batch.len() as u64;
                Ok(())
            }
            Published::Fenced { landed, reason } => {
                self.last_seq += landed as u64;
                tracing::warn!(
                    url = %js.url(),
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
}

/// How many of `messages`, from the first on, the stream holds at their seqs.
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
            Ok(message) if message.payload == m.payload => found += 1,
            _ => break,
        }
    }
    Ok(found)
}

/// Publishes a group commit: consecutive atomic batches of at most
/// [`ATOMIC_BATCH_MESSAGES_MAX`], each acknowledged before the next is sent, each
/// retried under a new batch id after unclear failures until [`PUBLISH_RETRY_WINDOW`]
/// from now has passed. Returns the group commit with the outcome.
async fn publish_batch(
    context: async_nats::jetstream::Context,
    subject: String,
    stream: String,
    batch: Vec<Outgoing>,
) -> (Vec<Outgoing>, Published) {
    let deadline = Instant::now() + PUBLISH_RETRY_WINDOW;
    let mut stored = 0;
    let mut attempts = 0u32;
    while stored < batch.len() {
        let part = &batch[stored..batch.len().min(stored + ATOMIC_BATCH_MESSAGES_MAX)];
        attempts += 1;
        let refusal = match publish_atomic(&context, &subject, &stream, part).await {
            Attempt::Stored => {
                stored += part.len();
                continue;
            }
            Attempt::Fenced(reason) | Attempt::Duplicate(reason) => reason,
            Attempt::Broken(reason) => return (batch, Published::Unclear { reason }),
            Attempt::Retry(reason) => {
                if Instant::now() >= deadline {
                    let reason = format!(
                        "JetStream did not acknowledge the batch within {PUBLISH_RETRY_WINDOW:?} ({attempts} attempts): {reason}"
                    );
                    return (batch, Published::Unclear { reason });
                }
                if attempts == 1 {
                    tracing::warn!(%reason, "publishing to JetStream: retrying the batch");
                }
                tokio::time::sleep(PUBLISH_RETRY_INTERVAL).await;
                continue;
            }
        };
        // Refused as stale or as a duplicate: an earlier attempt of this batch may
        // have landed (its answer lost); the stream says whether it did.
        match stored_at_their_seqs(&context, &stream, part).await {
            Ok(found) if found == part.len() => stored += found,
            Ok(found) => {
                let landed = stored + found;
                return (
                    batch,
                    Published::Fenced {
                        landed,
                        reason: refusal,
                    },
                );
            }
            Err(e) => {
                let reason = format!("{refusal}; then reading the stream back: {e}");
                return (batch, Published::Unclear { reason });
            }
        }
    }
    if attempts as usize > batch.len().div_ceil(ATOMIC_BATCH_MESSAGES_MAX) {
        tracing::info!(
            attempts,
            events = batch.len(),
            "batch acknowledged after retries"
        );
    }
    (batch, Published::All)
}

/// One attempt at publishing `part` as one atomic batch under a fresh batch id:
/// every message but the last sent without waiting, the last one commits the batch
/// and its answer says how all of them ended.
async fn publish_atomic(
    context: &async_nats::jetstream::Context,
    subject: &str,
    stream: &str,
    part: &[Outgoing],
) -> Attempt {
    let batch_id = nuid::next().to_string();
    let client = context.client();
    let (last, rest) = part.split_last().expect("a batch has messages");
    let headers = |i: usize, m: &Outgoing| {
        let mut headers = HeaderMap::new();
        headers.insert(header::NATS_MESSAGE_ID, m.id.as_str());
        headers.insert(header::NATS_BATCH_ID, batch_id.as_str());
        headers.insert(header::NATS_BATCH_SEQUENCE, (i + 1).to_string());
        if i == 0 {
            headers.insert(header::NATS_EXPECTED_LAST_SEQUENCE, (m.seq - 1).to_string());
        }
        headers
    };
    for (i, m) in rest.iter().enumerate() {
        let sent = client
            .publish_with_headers(subject.to_owned(), headers(i, m), m.payload.clone())
            .await;
        if let Err(e) = sent {
            return Attempt::Retry(format!("publishing seq {}: {e}", m.seq));
        }
    }
    let mut commit = headers(rest.len(), last);
    commit.insert(header::NATS_BATCH_COMMIT, header::NATS_BATCH_COMMIT_FINAL);
    let message = PublishMessage::build()
        .payload(last.payload.clone())
        .headers(commit);
    let ack = match context.send_publish(subject.to_owned(), message).await {
        Ok(ack) => ack,
        Err(e) => return Attempt::Retry(format!("publishing seq {}: {e}", last.seq)),
    };
    let seqs = format!("seqs {}..={}", part[0].seq, last.seq);
    match ack.await {
        Ok(ack)
            if ack.stream == stream
                && ack.sequence == last.seq
                && ack.batch_id.as_deref() == Some(batch_id.as_str())
                && ack.batch_size == Some(part.len() as u64) =>
        {
            Attempt::Stored
        }
        Ok(ack) => Attempt::Broken(format!(
            "batch {batch_id} ({seqs}) was acknowledged as {} messages ending at seq {} of {}, batch {:?}",
            ack.batch_size.unwrap_or(0),
            ack.sequence,
            ack.stream,
            ack.batch_id
        )),
        Err(e) => match refusal(&e) {
            _ if e.kind() == PublishErrorKind::WrongLastSequence => {
                Attempt::Fenced(format!("{seqs} refused: {e}"))
            }
            Some(ErrorCode::ATOMIC_PUBLISH_CONTAINS_DUPLICATE_MESSAGE) => {
                Attempt::Duplicate(format!("{seqs} refused as a duplicate: {e}"))
            }
            Some(
                ErrorCode::ATOMIC_PUBLISH_INCOMPLETE_BATCH
                | ErrorCode::ATOMIC_PUBLISH_TOO_MANY_INFLIGHT,
            ) => Attempt::Retry(format!("{seqs}: {e}")),
            Some(ErrorCode::ATOMIC_PUBLISH_DISABLED) => Attempt::Broken(format!(
                "{seqs} refused: atomic publish is no longer allowed on the stream (`allow_atomic`); \
                 a restart of command-svc allows it again"
            )),
            Some(_) => Attempt::Broken(format!("{seqs} refused: {e}")),
            None => match e.kind() {
                PublishErrorKind::TimedOut
                | PublishErrorKind::BrokenPipe
                | PublishErrorKind::StreamNotFound
                | PublishErrorKind::MaxAckPending => {
                    Attempt::Retry(format!("no acknowledgement for {seqs}: {e}"))
                }
                _ => Attempt::Broken(format!("{seqs} refused: {e}")),
            },
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
    /// Stages the lines of `bytes` (whole lines, each ending in a newline) for the
    /// next sync, checking that each carries the seq it will get in the stream.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
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
            self.staged.push(Outgoing {
                seq,
                id: format!("{seq}-{crc}"),
                payload: Bytes::copy_from_slice(line),
            });
        }
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
        let staged = !self.staged.is_empty();
        self.publish_staged()?;
        if staged {
            assert_eq!(
                self.last_seq, mark.seq,
                "the durable mark is the stream's end"
            );
        }
        self.last_seq = mark.seq;
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
