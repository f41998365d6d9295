//! The event log on NATS JetStream, beyond one machine: the connection, the stream,
//! and reading the stream as a log ([`StreamLog`]). Both sides use this file:
//! command-svc as a module, query-svc by path (as it does `runtime.rs`), since the
//! two services never depend on each other. The write side's publishing is in
//! `log_stream.rs`, the read side's tailing in query-svc's `stream_source.rs`.
//!
//! ## The log as a stream
//!
//! `--log nats://HOST:PORT[,HOST:PORT...]/STREAM` names a stream with one subject,
//! `foldbook.STREAM` (see [`shared_events::location`]). Each message is exactly one
//! log line (the checksummed JSON envelope, without its newline), and the stream
//! sequence is the event's seq: message 1 is event 1, and so on without gaps (the
//! stream is created with `deny_delete` and `deny_purge`, and a reader refuses a
//! stream whose sequence and events disagree). So a snapshot's seq says where to
//! resume.
//!
//! Everything above the storage interfaces reads bytes by offset, as from a file. A
//! stream has no byte offsets, so they are computed: the offset of event N is the
//! length of events 1..N-1, each line with its newline, exactly as in the file the
//! same events would make. Every reader computes them alike from where it starts (a
//! snapshot records its offset; genesis is 0), and [`LogRead::locate`] tells a
//! [`StreamLog`] which seq starts at an offset before it reads from there.
//!
//! ## Threads
//!
//! async-nats is asynchronous; the writer, the tailer and history readers are plain
//! threads, and start-up runs inside the binaries' own runtime, where blocking on a
//! runtime is not allowed. So the client lives on a small runtime of its own, and
//! [`JetStream::block_on`] runs a future there and waits for it on a plain channel,
//! from any thread. Reading uses an ordered consumer (recreated by the client on any
//! gap, so it delivers every message in order) feeding a bounded buffer.

use async_nats::jetstream;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::stream;
use futures_util::StreamExt;
use shared_events::source::{LineWindow, LogRead};
use shared_events::{LogCursor, StreamUrl};
use std::future::Future;
use std::io;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest wait for a TCP connection to a server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the answer to one JetStream API request or publish ack.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a message the stream says it has (a cluster that is electing a
/// leader can take seconds).
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes a feed may have delivered that its reader has not taken yet.
pub const FEED_BYTES_BUFFERED: usize = 8 << 20;
/// Pause before a failed consumer is created again.
pub const FEED_RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// Worker threads of the client's own runtime.
const RUNTIME_THREADS: usize = 1;
/// How long the server remembers a `Nats-Msg-Id`: a publish retried within it is
/// dropped as a duplicate (the NATS default; retries take far less).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Why JetStream cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JetStreamError {
    #[error("{url}: cannot start the NATS client: {message}")]
    Client { url: String, message: String },
    #[error("{url}: {message}")]
    Stream { url: String, message: String },
    #[error("{url}: JetStream did not become ready within {waited:?}: {last}")]
    NotReady {
        url: String,
        waited: Duration,
        last: String,
    },
}

/// What the stream holds: its first and last seq (`first > last` when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamBounds {
    pub first_seq: u64,
    pub last_seq: u64,
}

/// A connection to the servers of one stream, with the runtime it runs on.
pub struct JetStream {
    url: StreamUrl,
    subject: String,
    context: jetstream::Context,
    /// `None` only while dropping (the runtime is shut down without blocking, since
    /// the last handle may go away inside another runtime).
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for JetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStream").field("url", &self.url).finish()
    }
}

impl Drop for JetStream {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl JetStream {
    /// Starts the client for `url` (named `name` in the servers' connection lists).
    /// It connects in the background and keeps reconnecting, to any server of the
    /// cluster, for as long as it lives: callers find out whether the stream is
    /// there with their first request.
    pub fn connect(url: &StreamUrl, name: &str) -> Result<Arc<JetStream>, JetStreamError> {
        let client_error = |message: String| JetStreamError::Client {
            url: url.to_string(),
            message,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("nats")
            .enable_all()
            .build()
            .map_err(|e| client_error(e.to_string()))?;
        let servers = url.server_urls();
        let shown = url.to_string();
        let options = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let url = shown.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => tracing::info!(%url, "connected to NATS"),
                        async_nats::Event::Disconnected => {
                            tracing::warn!(%url, "disconnected from NATS; reconnecting")
                        }
                        other => tracing::debug!(%url, event = %other, "NATS client event"),
                    }
                }
            });
        let client =
            run_on(&runtime, options.connect(servers)).map_err(|e| client_error(e.to_string()))?;
        let context = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .backpressure_on_inflight(true)
            .build(client);
        Ok(Arc::new(JetStream {
            subject: url.subject(),
            url: url.clone(),
            context,
            runtime: Some(runtime),
        }))
    }

    pub fn url(&self) -> &StreamUrl {
        &self.url
    }

    /// The one subject of the stream.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn context(&self) -> &jetstream::Context {
        &self.context
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the client")
    }

    /// Runs `fut` on the client's runtime and waits for its output. Callable from
    /// any thread, also from inside another runtime (it blocks that thread, as a
    /// file read would).
    pub fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        run_on(self.runtime(), fut)
    }

    /// The stream's first and last seq; `None` when it does not exist.
    pub fn bounds(&self) -> io::Result<Option<StreamBounds>> {
        let context = self.context.clone();
        let name = self.url.stream.clone();
        self.block_on(async move {
            match context.get_stream(&name).await {
                Ok(mut stream) => {
                    let info = stream.info().await.map_err(io::Error::other)?;
                    Ok(Some(bounds_of(&info.state)))
                }
                Err(e) if stream_missing(&e) => Ok(None),
                Err(e) => Err(io::Error::other(e)),
            }
        })
    }

    /// The write side's start: creates the stream if it does not exist (file
    /// storage, `replicas` copies, nothing ever discarded), or checks that the
    /// existing one keeps every event. Waits up to `ready_timeout` for JetStream to
    /// answer (servers starting, a cluster electing its leader).
    pub fn ensure_stream(
        &self,
        replicas: usize,
        ready_timeout: Duration,
    ) -> Result<StreamBounds, JetStreamError> {
        let wanted = self.stream_config(replicas);
        let deadline = Instant::now() + ready_timeout;
        let mut logged = false;
        loop {
            let (context, config) = (self.context.clone(), wanted.clone());
            let attempt = self.block_on(async move {
                match context.get_stream(&config.name).await {
                    Ok(mut stream) => {
                        let info = stream.info().await.map_err(|e| e.to_string())?;
                        Ok((info.config.clone(), bounds_of(&info.state), false))
                    }
                    Err(e) if stream_missing(&e) => {
                        let mut stream = context
                            .create_stream(config)
                            .await
                            .map_err(|e| e.to_string())?;
                        let info = stream.info().await.map_err(|e| e.to_string())?;
                        Ok((info.config.clone(), bounds_of(&info.state), true))
                    }
                    Err(e) => Err(e.to_string()),
                }
            });
            match attempt {
                Ok((config, bounds, created)) => {
                    self.check_config(&config, replicas)?;
                    if created {
                        tracing::info!(url = %self.url, replicas, "created the stream");
                    }
                    return Ok(bounds);
                }
                Err(last) if Instant::now() >= deadline => {
                    return Err(JetStreamError::NotReady {
                        url: self.url.to_string(),
                        waited: ready_timeout,
                        last,
                    });
                }
                Err(last) => {
                    if !logged {
                        tracing::info!(url = %self.url, reason = %last, "waiting for JetStream");
                        logged = true;
                    }
                    std::thread::sleep(FEED_RETRY_INTERVAL);
                }
            }
        }
    }

    /// The stream as the write side creates it.
    fn stream_config(&self, replicas: usize) -> stream::Config {
        stream::Config {
            name: self.url.stream.clone(),
            description: Some("foldbook event log: one message per event, seq = event seq".into()),
            subjects: vec![self.subject.clone()],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            retention: stream::RetentionPolicy::Limits,
            max_messages: -1,
            max_bytes: -1,
            max_messages_per_subject: -1,
            max_age: Duration::ZERO,
            discard: stream::DiscardPolicy::New,
            max_message_size: shared_events::codec::LINE_BYTES_MAX as i32,
            duplicate_window: DUPLICATE_WINDOW,
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            ..Default::default()
        }
    }

    /// An existing stream must hold our subject in files and never drop a message.
    fn check_config(&self, config: &stream::Config, replicas: usize) -> Result<(), JetStreamError> {
        let problem = if !config.subjects.iter().any(|s| s == &self.subject) {
            Some(format!(
                "the stream exists with subjects {:?}, not {}",
                config.subjects, self.subject
            ))
        } else if config.retention != stream::RetentionPolicy::Limits {
            Some(format!(
                "the stream's retention is {:?}: it would remove consumed events",
                config.retention
            ))
        } else if config.max_messages > 0
            || config.max_bytes > 0
            || config.max_messages_per_subject > 0
            || !config.max_age.is_zero()
        {
            Some(
                "the stream has limits (max messages, bytes or age): it would drop old events"
                    .to_owned(),
            )
        } else {
            None
        };
        if let Some(message) = problem {
            return Err(JetStreamError::Stream {
                url: self.url.to_string(),
                message: format!(
                    "{message}; an event log never loses events (see README, JetStream)"
                ),
            });
        }
        if config.storage != stream::StorageType::File {
            tracing::warn!(url = %self.url, "the stream is in memory: a server restart loses the log");
        }
        if config.num_replicas != replicas {
            tracing::warn!(
                url = %self.url,
                stream_replicas = config.num_replicas,
                wanted = replicas,
                "the stream has {} replicas, --nats-replicas says {replicas}; leaving it as it is",
                config.num_replicas
            );
        }
        Ok(())
    }
}

/// Runs `fut` on `runtime` and waits for it on a plain channel, which (unlike
/// `Runtime::block_on`) is allowed inside another runtime.
fn run_on<F>(runtime: &tokio::runtime::Runtime, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .expect("a task on the JetStream runtime panicked or the runtime stopped")
}

fn bounds_of(state: &stream::State) -> StreamBounds {
    if state.messages == 0 {
        return StreamBounds {
            first_seq: state.last_sequence + 1,
            last_seq: state.last_sequence,
        };
    }
    StreamBounds {
        first_seq: state.first_sequence,
        last_seq: state.last_sequence,
    }
}

fn stream_missing(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        async_nats::jetstream::context::GetStreamErrorKind::JetStream(js)
            if js.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// What a feed hands its reader.
enum FeedItem {
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
struct Feed {
    lines: Receiver<FeedItem>,
    /// Room in the buffer, in bytes: the consumer task waits for it.
    room: Arc<tokio::sync::Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Wakes a tailer when a message arrives (set by the read side).
type Wake = Arc<Mutex<Option<SyncSender<()>>>>;

impl Feed {
    fn start(js: &JetStream, from_seq: u64, wake: Wake) -> Feed {
        let (tx, lines) = std::sync::mpsc::channel();
        let room = Arc::new(tokio::sync::Semaphore::new(FEED_BYTES_BUFFERED));
        let task = js.runtime().spawn(run_feed(
            js.context.clone(),
            js.url.stream.clone(),
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

/// A stream read as a log ([`LogRead`]): lines fetched in order from the seq it was
/// located at, held in a [`LineWindow`] and addressed by computed offsets (see the
/// module docs). Reading past what it holds waits for the next message, or says the
/// log ends where the stream does. Only forward reading from a located line is
/// served; a read before the window is an error.
pub struct StreamLog {
    js: Arc<JetStream>,
    window: LineWindow,
    feed: Option<Feed>,
    wake: Wake,
    /// The stream's last seq as last seen (a delivered message's seq + pending, or
    /// the stream's info).
    known_last: u64,
    /// Whether the stream was seen to exist.
    seen: bool,
    /// When the server stored the newest line taken in (µs since the epoch).
    newest_ts_us: u64,
    /// The last trouble the feed reported, for error messages.
    trouble: Option<String>,
}

impl std::fmt::Debug for StreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamLog")
            .field("url", &self.js.url)
            .field("window", &(self.window.start(), self.window.end()))
            .finish()
    }
}

impl StreamLog {
    /// A reader of the stream, located at its start (seq 1, offset 0).
    pub fn new(js: Arc<JetStream>) -> Self {
        StreamLog {
            js,
            window: LineWindow::new(LogCursor::start()),
            feed: None,
            wake: Arc::new(Mutex::new(None)),
            known_last: 0,
            seen: false,
            newest_ts_us: 0,
            trouble: None,
        }
    }

    pub fn jetstream(&self) -> &Arc<JetStream> {
        &self.js
    }

    /// The lines held: from the located line (or the last one dropped before) to
    /// the last line taken in.
    pub fn window(&self) -> &LineWindow {
        &self.window
    }

    /// Drops held lines that end at or before `offset` (read and done with).
    pub fn drop_before(&mut self, offset: u64) {
        self.window.drop_before(offset);
    }

    /// The stream's last seq as last seen.
    pub fn known_last(&self) -> u64 {
        self.known_last
    }

    /// Whether the stream was seen to exist (a message arrived, or its info).
    pub fn seen(&self) -> bool {
        self.seen
    }

    /// When the server stored the newest line taken in, µs since the epoch (0: none).
    pub fn newest_ts_us(&self) -> u64 {
        self.newest_ts_us
    }

    /// From now on, every message that arrives sends a token to `wake`.
    pub fn set_wake(&mut self, wake: SyncSender<()>) {
        *self.wake.lock().expect("wake lock") = Some(wake);
    }

    /// Stops fetching (the held lines stay); the next read past them starts again.
    pub fn close(&mut self) {
        self.feed = None;
    }

    /// Takes in what the feed has delivered, without waiting, while fewer than
    /// `held_max` bytes are held (starting the feed if it is not running). Returns
    /// whether more is waiting.
    pub fn poll(&mut self, held_max: usize) -> io::Result<bool> {
        if self.feed.is_none() {
            self.feed = Some(Feed::start(
                &self.js,
                self.window.end().next_seq,
                self.wake.clone(),
            ));
        }
        while self.window.held_bytes() < held_max {
            let item = match self.feed.as_ref().map(|f| f.lines.try_recv()) {
                Some(Ok(item)) => item,
                Some(Err(std::sync::mpsc::TryRecvError::Empty)) | None => return Ok(false),
                Some(Err(std::sync::mpsc::TryRecvError::Disconnected)) => {
                    self.feed = None;
                    return Err(io::Error::other("the stream feed stopped"));
                }
            };
            self.take(item)?;
        }
        Ok(true)
    }

    /// Takes one item from the feed into the window, checking that it is the next
    /// line: stream seq and place must agree, and a line holds no newline.
    fn take(&mut self, item: FeedItem) -> io::Result<()> {
        let (seq, payload, ts_us, pending, permits) = match item {
            FeedItem::Line {
                seq,
                payload,
                ts_us,
                pending,
                permits,
            } => (seq, payload, ts_us, pending, permits),
            FeedItem::Trouble(trouble) => {
                self.trouble = Some(trouble);
                return Ok(());
            }
        };
        if let Some(feed) = &self.feed {
            feed.room.add_permits(permits as usize);
        }
        self.seen = true;
        self.trouble = None;
        let expected = self.window.end().next_seq;
        if seq != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: stream message {seq} came where seq {expected} was expected \
                     (messages were removed from the stream?)",
                    self.js.url
                ),
            ));
        }
        if memchr::memchr(b'\n', &payload).is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: stream message {seq} holds a newline: it is not a log line",
                    self.js.url
                ),
            ));
        }
        self.window.push(&payload);
        self.known_last = self.known_last.max(seq + pending);
        self.newest_ts_us = ts_us;
        Ok(())
    }

    /// Asks the stream how far it goes; `false` when it does not exist.
    pub fn refresh(&mut self) -> io::Result<bool> {
        match self.js.bounds()? {
            Some(bounds) => {
                self.seen = true;
                self.known_last = self.known_last.max(bounds.last_seq);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Waits (at most [`READ_TIMEOUT`]) for the next line; `Ok(false)` when the
    /// stream ends before it.
    fn next_line(&mut self) -> io::Result<bool> {
        let want = self.window.end().next_seq;
        if want > self.known_last {
            if !self.refresh()? {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{}: the stream does not exist", self.js.url),
                ));
            }
            if want > self.known_last {
                return Ok(false);
            }
        }
        if self.feed.is_none() {
            self.feed = Some(Feed::start(&self.js, want, self.wake.clone()));
        }
        let deadline = Instant::now() + READ_TIMEOUT;
        while self.window.end().next_seq == want {
            let left = deadline.saturating_duration_since(Instant::now());
            let received = self
                .feed
                .as_ref()
                .expect("started above")
                .lines
                .recv_timeout(left);
            match received {
                Ok(item) => self.take(item)?,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{}: message {want} did not arrive within {READ_TIMEOUT:?} (the stream holds up to {}){}",
                            self.js.url,
                            self.known_last,
                            self.trouble
                                .as_ref()
                                .map_or(String::new(), |t| format!("; last trouble: {t}"))
                        ),
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.feed = None;
                    return Err(io::Error::other("the stream feed stopped"));
                }
            }
        }
        Ok(true)
    }
}

impl LogRead for StreamLog {
    /// Not known without reading the whole stream.
    fn length(&mut self) -> io::Result<Option<u64>> {
        Ok(None)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if offset < self.window.start().offset {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: byte {offset} is before the located line at {} (seq {})",
                    self.js.url,
                    self.window.start().offset,
                    self.window.start().next_seq
                ),
            ));
        }
        loop {
            let n = self.window.read_at(offset, buf);
            if n > 0 {
                return Ok(n);
            }
            if !self.next_line()? {
                return Ok(0);
            }
        }
    }

    fn locate(&mut self, at: LogCursor) {
        // Reading on from where it stands keeps the feed; anywhere else starts anew.
        let start = self.window.start();
        if at.offset >= start.offset && at.offset <= self.window.end().offset {
            self.window.drop_before(at.offset);
            let start = self.window.start();
            if start.offset == at.offset && start.next_seq == at.next_seq {
                return;
            }
        }
        self.window = LineWindow::new(at);
        self.feed = None;
    }

    /// A stream continues a snapshot at `seq` when it holds `seq` events or more and
    /// has not lost the ones after it. The offset cannot be checked without reading
    /// the stream from the start: a stream deleted and created again under the same
    /// name, as long as the old one or longer, needs its snapshots deleted by hand.
    fn check_continues(&mut self, seq: u64, _offset: u64) -> Result<(), String> {
        let bounds = match self.js.bounds() {
            Ok(Some(bounds)) => bounds,
            Ok(None) if seq == 0 => return Ok(()),
            Ok(None) => return Err(format!("{}: the stream does not exist", self.js.url)),
            Err(e) => return Err(format!("{}: {e}", self.js.url)),
        };
        if bounds.last_seq < seq {
            return Err(format!(
                "the stream ends at seq {}, before the snapshot's seq {seq}",
                bounds.last_seq
            ));
        }
        if bounds.first_seq > seq + 1 {
            return Err(format!(
                "the stream starts at seq {}: events after the snapshot's seq {seq} were removed",
                bounds.first_seq
            ));
        }
        Ok(())
    }
}
