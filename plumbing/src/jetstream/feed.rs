//! An ordered consumer of a stream from some seq on, delivering its messages into a
//! bounded buffer that a plain thread takes from ([`Feed`]); it creates the consumer
//! again, from the next seq, whenever it fails.

use super::{FEED_BYTES_BUFFERED, FEED_RETRY_INTERVAL, JetStream};
use async_nats::jetstream;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
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
    },
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
    /// Starts delivering `js`'s stream from `from_seq` on.
    pub fn start(js: &JetStream, from_seq: u64, wake: Wake) -> Feed {
        let (tx, lines) = std::sync::mpsc::channel();
        let room = Arc::new(tokio::sync::Semaphore::new(FEED_BYTES_BUFFERED));
        let task = js.runtime().spawn(run_feed(
            js.context().clone(),
            js.url().stream.clone(),
            from_seq,
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
    tx: Sender<FeedItem>,
    room: Arc<tokio::sync::Semaphore>,
    wake: Wake,
) {
    let mut last_trouble = String::new();
    loop {
        let trouble = match open_consumer(&context, &stream_name, next).await {
            Ok(mut messages) => loop {
                let message = match messages.next().await {
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
                };
                if tx.send(item).is_err() {
                    return;
                }
                if let Some(wake) = wake.lock().expect("wake lock").as_ref() {
                    // A full channel already holds a wake-up.
                    let _ = wake.try_send(());
                }
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
            ..Default::default()
        })
        .await
        .map_err(|e| format!("creating a consumer of {stream_name}: {e}"))?;
    consumer
        .messages()
        .await
        .map_err(|e| format!("consuming {stream_name}: {e}"))
}
