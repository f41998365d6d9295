//! An ordered consumer of a stream from some seq on, delivering its messages into a
//! bounded buffer that a plain thread takes from ([`Feed`]); it creates the consumer
//! again, from the next seq, whenever it fails.
//!
//! A feed of only some subjects (a filter) is delivered only their messages. When no
//! message has come for [`FILTERED_IDLE_CHECK_INTERVAL`] it asks the stream whether
//! it has been delivered everything it will be up to the stream's last seq `L`: it
//! reads `L` (the stream's info) first, then the seq of the last message of each of
//! its subjects (from the stream leader, not a replica that may lag behind). If none
//! of those is past the last message delivered, every message of its subjects up to
//! `L` was delivered (one stored later than the info was read has a seq above `L`),
//! so the lines up to `L` that it was not delivered are other subjects' and it says
//! so ([`FeedItem::Through`]), with where line `L + 1` starts (message `L`'s
//! [`OFFSET_HEADER`] plus its length and newline).

use super::{
    FEED_BYTES_BUFFERED, FEED_RETRY_INTERVAL, FILTERED_IDLE_CHECK_INTERVAL, JetStream,
    OFFSET_HEADER, parse_offset,
};
use async_nats::jetstream;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use futures_util::StreamExt;
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

/// What a feed hands its reader.
pub enum FeedItem {
    Line {
        seq: u64,
        payload: bytes::Bytes,
        /// When the server stored it, microseconds since the Unix epoch.
        ts_us: u64,
        /// Messages the stream held after this one when it was delivered.
        pending: u64,
        /// Room it took in the buffer, given back when it is taken.
        permits: u32,
        /// Where its line starts in the log, as its [`OFFSET_HEADER`] says (`None`:
        /// no such header, a message of an older build).
        offset: Option<u64>,
    },
    /// A filtered feed was delivered every message of its subjects up to `seq`; the
    /// line after `seq` starts at byte `next_offset`.
    Through { seq: u64, next_offset: u64 },
    /// The consumer could not be created or failed; the feed tries again.
    Trouble(String),
}

/// An ordered consumer from some seq on, delivering into a bounded buffer.
pub struct Feed {
    /// What the consumer task delivered, in stream order.
    pub(crate) lines: Receiver<FeedItem>,
    /// Room in the buffer, in bytes: the consumer task waits for it.
    pub(crate) room: Arc<tokio::sync::Semaphore>,
    /// The consumer task, aborted when the feed is dropped.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Wakes a tailer when a message arrives (set by the read side).
pub type Wake = Arc<Mutex<Option<SyncSender<()>>>>;

impl Feed {
    /// Starts delivering `js`'s stream from `from_seq` on: every message, or (with
    /// `filter`) only those on these subjects.
    pub fn start(js: &JetStream, from_seq: u64, filter: Option<Vec<String>>, wake: Wake) -> Feed {
        let (tx, lines) = std::sync::mpsc::channel();
        let room = Arc::new(tokio::sync::Semaphore::new(FEED_BYTES_BUFFERED));
        let task = js.runtime().spawn(run_feed(
            js.context().clone(),
            js.url().stream.clone(),
            from_seq,
            filter,
            tx,
            room.clone(),
            wake,
        ));
        Feed { lines, room, task }
    }
}

/// Delivers the stream from `next` on, in order, into `tx`, for as long as the
/// receiver lives; creates the consumer again (from the next seq) when it fails.
async fn run_feed(
    context: jetstream::Context,
    stream_name: String,
    mut next: u64,
    filter: Option<Vec<String>>,
    tx: Sender<FeedItem>,
    room: Arc<tokio::sync::Semaphore>,
    wake: Wake,
) {
    let mut last_trouble = String::new();
    let notify = |wake: &Wake| {
        if let Some(wake) = wake.lock().expect("wake lock").as_ref() {
            // A full channel already holds a wake-up.
            let _ = wake.try_send(());
        }
    };
    loop {
        let trouble = match open_consumer(&context, &stream_name, next, filter.clone()).await {
            Ok(mut messages) => loop {
                let received = match &filter {
                    None => messages.next().await,
                    Some(subjects) => {
                        match tokio::time::timeout(FILTERED_IDLE_CHECK_INTERVAL, messages.next())
                            .await
                        {
                            Ok(received) => received,
                            Err(_idle) => {
                                match delivered_through(&context, &stream_name, subjects, next - 1)
                                    .await
                                {
                                    Ok(Some((seq, next_offset))) => {
                                        if tx.send(FeedItem::Through { seq, next_offset }).is_err()
                                        {
                                            return;
                                        }
                                        notify(&wake);
                                        next = seq + 1;
                                    }
                                    Ok(None) => {}
                                    Err(e) => {
                                        tracing::debug!(stream = %stream_name, error = %e, "asking how far a filtered feed is")
                                    }
                                }
                                continue;
                            }
                        }
                    }
                };
                let message = match received {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => break format!("reading the stream: {e}"),
                    None => break "the consumer ended".to_owned(),
                };
                let (seq, pending, ts_us) = match message.info() {
                    Ok(info) => (
                        info.stream_sequence,
                        info.pending,
                        (info.published.unix_timestamp_nanos() / 1000).max(0) as u64,
                    ),
                    Err(e) => break format!("a message without stream metadata: {e}"),
                };
                let offset = message
                    .message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(OFFSET_HEADER))
                    .map(|v| parse_offset(v.as_str()).ok_or_else(|| v.as_str().to_owned()));
                let offset = match offset.transpose() {
                    Ok(offset) => offset,
                    Err(bad) => {
                        break format!("message {seq} has a bad {OFFSET_HEADER} header {bad:?}");
                    }
                };
                let payload = message.message.payload.clone();
                let permits = payload.len().clamp(1, FEED_BYTES_BUFFERED) as u32;
                match room.acquire_many(permits).await {
                    Ok(permit) => permit.forget(),
                    Err(_) => return,
                }
                let item = FeedItem::Line {
                    seq,
                    payload,
                    ts_us,
                    pending,
                    permits,
                    offset,
                };
                if tx.send(item).is_err() {
                    return;
                }
                notify(&wake);
                next = seq + 1;
            },
            Err(e) => e,
        };
        if trouble != last_trouble {
            tracing::debug!(stream = %stream_name, next, %trouble, "stream feed: trying again");
            if tx.send(FeedItem::Trouble(trouble.clone())).is_err() {
                return;
            }
            last_trouble = trouble;
        }
        tokio::time::sleep(FEED_RETRY_INTERVAL).await;
    }
}

async fn open_consumer(
    context: &jetstream::Context,
    stream_name: &str,
    from_seq: u64,
    filter: Option<Vec<String>>,
) -> Result<pull::Ordered, String> {
    let stream = context
        .get_stream_no_info(stream_name)
        .await
        .map_err(|e| format!("the stream {stream_name}: {e}"))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from_seq.max(1),
            },
            filter_subjects: filter.unwrap_or_default(),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("creating a consumer of {stream_name}: {e}"))?;
    consumer
        .messages()
        .await
        .map_err(|e| format!("consuming {stream_name}: {e}"))
}

/// Whether a feed of `subjects` that was delivered their messages up to seq
/// `delivered` has been delivered all of them up to the stream's last seq `L` (see the
/// module docs): `Some((L, where line L + 1 starts))`, or `None` when the stream is not
/// past `delivered` or a message of `subjects` after it is still to come.
async fn delivered_through(
    context: &jetstream::Context,
    stream_name: &str,
    subjects: &[String],
    delivered: u64,
) -> Result<Option<(u64, u64)>, String> {
    let stream = context
        .get_stream_no_info(stream_name)
        .await
        .map_err(|e| e.to_string())?;
    // First the stream's end, then each subject's last message: in this order.
    let last = stream
        .get_info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .last_sequence;
    if last <= delivered {
        return Ok(None);
    }
    for subject in subjects {
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) if message.sequence > delivered => return Ok(None),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {}
            Err(e) => return Err(format!("the last message on {subject}: {e}")),
        }
    }
    let message = stream
        .get_raw_message(last)
        .await
        .map_err(|e| format!("message {last}: {e}"))?;
    let offset = message
        .headers
        .get(OFFSET_HEADER)
        .and_then(|v| parse_offset(v.as_str()))
        .ok_or_else(|| {
            format!(
                "message {last}, on {}, has no {OFFSET_HEADER} header: a filtered reader \
                 cannot tell where the lines after it start",
                message.subject
            )
        })?;
    Ok(Some((last, offset + message.payload.len() as u64 + 1)))
}
