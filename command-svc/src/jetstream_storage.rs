//! The JetStream log as the writer sees it (`--log nats://HOST:PORT/STREAM`):
//! [`JetStreamStorage`] implements [`Storage`] and [`Recoverable`], so the writer, its
//! group commit, snapshots and recovery are the same code as for the file. Recovery
//! reads the stream's tail through [`JetStreamReader`] (plumbing's `jetstream::reader`); appending
//! publishes.
//!
//! ## Publishing
//!
//! `append` stages a group commit's lines; `sync` publishes them pipelined (every
//! message sent, then every acknowledgement awaited), each line one message with:
//!
//! - `Nats-Msg-Id: <seq>-<crc>`, derived from the seq (and the line's checksum, so
//!   two writers' different events for one seq never pass for each other): a retry
//!   of the same line within the server's duplicate window is dropped and acked with
//!   the seq the first one got;
//! - `Nats-Expected-Last-Sequence: <seq - 1>`: the server refuses the message unless
//!   the stream ends right before it. This fences out a second writer: whichever
//!   publishes a seq second is refused, so two writers never both get a seq;
//! - from the second message of a batch on, `Nats-Expected-Last-Msg-Id` as well: the
//!   id of the message before it in the batch. Without it, a message whose
//!   predecessor was refused could still land after another writer's message of the
//!   same seq, on top of a state it was not decided against.
//!
//! A 2xx is sent only after the PubAck, which the server sends once the message is
//! stored on a quorum of the stream's replicas (flushed to disk first with the
//! recommended `sync_interval: always`; see README, JetStream).
//!
//! ## Failures
//!
//! - Refused as stale (wrong last sequence or message id): another writer appended
//!   first. `sync` reports [`Fenced`] with how many of the batch's events landed
//!   (checked against the stream, not taken from the acks alone); the writer answers
//!   those, reloads (its snapshot, then the stream's tail) and decides the rest again.
//!   The history never forks.
//! - Anything unclear (no ack in time, the connection lost, no responders while a
//!   cluster elects a leader): the unacknowledged rest of the batch is published
//!   again, same ids and headers, so what already landed is dropped as a duplicate,
//!   for up to [`PUBLISH_RETRY_WINDOW`]. If that does not settle it, `sync` fails:
//!   the batch gets 503 and the writer stops (fail-stop), so a restart reads the
//!   truth from the stream.

use crate::storage::{Fenced, Recoverable, Storage};
use async_nats::jetstream::context::PublishErrorKind;
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

/// One line to publish.
#[derive(Debug, Clone)]
struct Outgoing {
    seq: u64,
    /// `Nats-Msg-Id`.
    id: String,
    /// The line without its newline.
    payload: Bytes,
}

/// How publishing a batch ended.
enum Published {
    /// Every message is stored, each at its seq.
    All,
    /// Another writer's message is where ours should be; the first `landed` are ours.
    Fenced { landed: usize, reason: String },
    /// No certainty within the retry window, or an answer that breaks the rules.
    Unclear { reason: String },
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
                let landed = self.count_landed(&batch, landed)?;
                self.last_seq += landed as u64;
                if landed == batch.len() {
                    // Only a retried copy was refused: the first one had landed.
                    return Ok(());
                }
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

    /// How many of `batch` are in the stream at their seqs, given that the first
    /// `acked` were acknowledged: a refusal of a retried message may hide that its
    /// first copy landed, so the stream itself is asked.
    fn count_landed(&self, batch: &[Outgoing], acked: usize) -> io::Result<usize> {
        let js = self.js().clone();
        let context = js.context().clone();
        let name = js.url().stream.clone();
        let rest: Vec<(u64, Bytes)> = batch[acked..]
            .iter()
            .map(|m| (m.seq, m.payload.clone()))
            .collect();
        let found = js.block_on(async move {
            let stream = context
                .get_stream_no_info(&name)
                .await
                .map_err(io::Error::other)?;
            let mut found = 0;
            for (seq, payload) in rest {
                match stream.get_raw_message(seq).await {
                    Ok(message) if message.payload == payload => found += 1,
                    _ => break,
                }
            }
            Ok::<_, io::Error>(found)
        })?;
        Ok(acked + found)
    }
}

/// Most publishes awaiting their acks at once: well below the client's in-flight
/// limit (async-nats allows 5 000).
const PUBLISH_IN_FLIGHT_MAX: usize = 1024;

/// Publishes `batch` in order, pipelined, and waits for every ack; publishes the
/// unacknowledged rest again after unclear failures, for up to
/// [`PUBLISH_RETRY_WINDOW`]. Returns the batch with the outcome.
async fn publish_batch(
    context: async_nats::jetstream::Context,
    subject: String,
    stream: String,
    batch: Vec<Outgoing>,
) -> (Vec<Outgoing>, Published) {
    let deadline = Instant::now() + PUBLISH_RETRY_WINDOW;
    let mut acked = 0;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let mut unclear = None;
        // In windows: an unacknowledged publish holds one of the client's in-flight
        // slots, and a send beyond them waits for a free one, which no ack awaited
        // later can free (a copy-log batch of 5 000 short lines hung there).
        while acked < batch.len() && unclear.is_none() {
            let window = acked..batch.len().min(acked + PUBLISH_IN_FLIGHT_MAX);
            let mut pending = Vec::with_capacity(window.len());
            for i in window {
                let m = &batch[i];
                let mut message = PublishMessage::build()
                    .payload(m.payload.clone())
                    .message_id(&m.id)
                    .expected_last_sequence(m.seq - 1);
                if i > 0 {
                    message = message.expected_last_message_id(&batch[i - 1].id);
                }
                match context.send_publish(subject.clone(), message).await {
                    Ok(ack) => pending.push(ack),
                    Err(e) => {
                        unclear = Some(format!("publishing seq {}: {e}", m.seq));
                        break;
                    }
                }
            }
            for ack in pending {
                let m = &batch[acked];
                match ack.await {
                    Ok(ack) if ack.stream == stream && ack.sequence == m.seq => acked += 1,
                    Ok(ack) => {
                        let reason = format!(
                            "message {} was stored as seq {} of {}, not as seq {}",
                            m.id, ack.sequence, ack.stream, m.seq
                        );
                        return (batch, Published::Unclear { reason });
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            PublishErrorKind::WrongLastSequence
                                | PublishErrorKind::WrongLastMessageId
                        ) =>
                    {
                        let reason = format!("seq {} refused: {e}", m.seq);
                        return (
                            batch,
                            Published::Fenced {
                                landed: acked,
                                reason,
                            },
                        );
                    }
                    Err(e) => {
                        unclear = Some(format!("no acknowledgement for seq {}: {e}", m.seq));
                        break;
                    }
                }
            }
        }
        if acked == batch.len() {
            if attempts > 1 {
                tracing::info!(
                    attempts,
                    events = batch.len(),
                    "batch acknowledged after retries"
                );
            }
            return (batch, Published::All);
        }
        let reason = unclear.unwrap_or_else(|| "acknowledgements missing".to_owned());
        if Instant::now() >= deadline {
            let reason = format!(
                "JetStream did not acknowledge the batch within {PUBLISH_RETRY_WINDOW:?} ({attempts} attempts): {reason}"
            );
            return (batch, Published::Unclear { reason });
        }
        if attempts == 1 {
            tracing::warn!(%reason, "publishing to JetStream: retrying the unacknowledged rest");
        }
        tokio::time::sleep(PUBLISH_RETRY_INTERVAL).await;
    }
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
