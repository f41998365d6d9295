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
//!
//! ## Credentials and TLS
//!
//! [`JetStream::connect`] reads them from `FOLDBOOK_NATS_*` variables
//! ([`NatsSettings::from_env`]), so every binary and subcommand takes the same ones,
//! and secrets never reach the command line or the logs. A server that refuses the
//! client is logged at error level once per reason, and the reason is added to the
//! errors of requests that time out meanwhile ([`JetStream::explain`]).

use async_nats::jetstream;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::stream;
use futures_util::StreamExt;
use shared_events::source::{LineWindow, LogRead};
use shared_events::{LogCursor, StreamUrl};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
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

/// Environment variables that configure the connection: credentials and TLS. Read
/// only from the environment (never the command line), in [`JetStream::connect`].
pub const ENV_USER: &str = "FOLDBOOK_NATS_USER";
pub const ENV_PASSWORD: &str = "FOLDBOOK_NATS_PASSWORD";
pub const ENV_TOKEN: &str = "FOLDBOOK_NATS_TOKEN";
pub const ENV_CREDS: &str = "FOLDBOOK_NATS_CREDS";
pub const ENV_CA: &str = "FOLDBOOK_NATS_CA";
pub const ENV_CERT: &str = "FOLDBOOK_NATS_CERT";
pub const ENV_KEY: &str = "FOLDBOOK_NATS_KEY";

/// How the client proves who it is; at most one way.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum NatsAuth {
    #[default]
    None,
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
    /// A `.creds` file (JWT and NKey seed).
    Creds(PathBuf),
}

/// Never shows a password or token.
impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => write!(f, "None"),
            NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword({user:?}, <hidden>)"),
            NatsAuth::Token(_) => write!(f, "Token(<hidden>)"),
            NatsAuth::Creds(path) => write!(f, "Creds({path:?})"),
        }
    }
}

/// TLS: required whenever any of its variables is set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatsTls {
    /// Root certificates (PEM) the server's certificate must chain to; without it,
    /// the system's.
    pub ca: Option<PathBuf>,
    /// A client certificate and its key (PEM), for servers that verify clients.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The connection settings the environment asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatsSettings {
    pub auth: NatsAuth,
    pub tls: Option<NatsTls>,
}

impl NatsSettings {
    /// Reads the `FOLDBOOK_NATS_*` variables through `var` (the process environment
    /// in use, a map in tests); an empty value counts as unset. Contradictory
    /// settings are an error naming the variables.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<NatsSettings, String> {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        let mut ways = Vec::new();
        let mut auth = NatsAuth::None;
        match (get(ENV_USER), get(ENV_PASSWORD)) {
            (Some(user), Some(password)) => {
                ways.push(format!("{ENV_USER}/{ENV_PASSWORD}"));
                auth = NatsAuth::UserPassword { user, password };
            }
            (Some(_), None) => return Err(format!("{ENV_USER} is set but {ENV_PASSWORD} is not")),
            (None, Some(_)) => return Err(format!("{ENV_PASSWORD} is set but {ENV_USER} is not")),
            (None, None) => {}
        }
        if let Some(token) = get(ENV_TOKEN) {
            ways.push(ENV_TOKEN.to_owned());
            auth = NatsAuth::Token(token);
        }
        if let Some(path) = get(ENV_CREDS) {
            ways.push(ENV_CREDS.to_owned());
            auth = NatsAuth::Creds(PathBuf::from(path));
        }
        if ways.len() > 1 {
            return Err(format!(
                "more than one NATS authentication is set ({}): set only one",
                ways.join(", ")
            ));
        }
        let client_cert = match (get(ENV_CERT), get(ENV_KEY)) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (Some(_), None) => return Err(format!("{ENV_CERT} is set but {ENV_KEY} is not")),
            (None, Some(_)) => return Err(format!("{ENV_KEY} is set but {ENV_CERT} is not")),
            (None, None) => None,
        };
        let ca = get(ENV_CA).map(PathBuf::from);
        let tls = (ca.is_some() || client_cert.is_some()).then_some(NatsTls { ca, client_cert });
        Ok(NatsSettings { auth, tls })
    }

    /// `options` with these settings; a file that is missing or does not parse is an
    /// error naming its variable and path.
    async fn apply(
        self,
        mut options: async_nats::ConnectOptions,
    ) -> Result<async_nats::ConnectOptions, String> {
        let must_exist = |var: &str, path: &Path| {
            if path.is_file() {
                Ok(())
            } else {
                Err(format!("{var}={}: no such file", path.display()))
            }
        };
        options = match self.auth {
            NatsAuth::None => options,
            NatsAuth::UserPassword { user, password } => options.user_and_password(user, password),
            NatsAuth::Token(token) => options.token(token),
            NatsAuth::Creds(path) => {
                must_exist(ENV_CREDS, &path)?;
                options.credentials_file(&path).await.map_err(|e| {
                    format!(
                        "{ENV_CREDS}={}: not a usable .creds file: {e}",
                        path.display()
                    )
                })?
            }
        };
        if let Some(tls) = self.tls {
            if let Some(ca) = tls.ca {
                must_exist(ENV_CA, &ca)?;
                options = options.add_root_certificates(ca);
            }
            if let Some((cert, key)) = tls.client_cert {
                must_exist(ENV_CERT, &cert)?;
                must_exist(ENV_KEY, &key)?;
                options = options.add_client_certificate(cert, key);
            }
            options = options.require_tls(true);
        }
        Ok(options)
    }
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
    /// Why the servers last refused the connection (bad credentials, TLS), until it
    /// next succeeds: added to the errors of requests that time out meanwhile.
    refusal: Arc<Mutex<Option<String>>>,
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
        let settings =
            NatsSettings::from_env(|name| std::env::var(name).ok()).map_err(client_error)?;
        let servers = url.server_urls();
        let shown = url.to_string();
        let refusal: Arc<Mutex<Option<String>>> = Arc::default();
        let noted = refusal.clone();
        let options = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let (url, noted) = (shown.clone(), noted.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            noted.lock().unwrap().take();
                            tracing::info!(%url, "connected to NATS")
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!(%url, "disconnected from NATS; reconnecting")
                        }
                        other => match refusal_of(&other) {
                            // Logged once per reason, not at every retry.
                            Some(reason) => {
                                let mut last = noted.lock().unwrap();
                                if last.as_deref() != Some(reason.as_str()) {
                                    tracing::error!(
                                        %url,
                                        %reason,
                                        "the NATS server refused the connection; check the FOLDBOOK_NATS_* settings"
                                    );
                                    *last = Some(reason);
                                }
                            }
                            None => tracing::debug!(%url, event = %other, "NATS client event"),
                        },
                    }
                }
            });
        let client = run_on(&runtime, async move {
            let options = settings.apply(options).await?;
            options.connect(servers).await.map_err(|e| e.to_string())
        })
        .map_err(client_error)?;
        let context = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .backpressure_on_inflight(true)
            .build(client);
        Ok(Arc::new(JetStream {
            subject: url.subject(),
            refusal,
            url: url.clone(),
            context,
            runtime: Some(runtime),
        }))
    }

    pub fn url(&self) -> &StreamUrl {
        &self.url
    }

    /// `error` of a request, with why the servers refuse the connection if they
    /// do (so a wrong password reads as such, not as a bare timeout).
    pub fn explain(&self, error: impl std::fmt::Display) -> String {
        match self.refusal.lock().unwrap().as_deref() {
            Some(reason) => format!("{error} (the NATS server refuses the connection: {reason})"),
            None => error.to_string(),
        }
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
                    let info = stream.info().await.map_err(|e| e.to_string())?;
                    Ok(Some(bounds_of(&info.state)))
                }
                Err(e) if stream_missing(&e) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
        .map_err(|e| io::Error::other(self.explain(e)))
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
                        last: self.explain(last),
                    });
                }
                Err(last) => {
                    let last = self.explain(last);
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

/// Why a client event says the servers refuse this client, if it does: its
/// credentials or its TLS settings are wrong (and retrying will not help).
fn refusal_of(event: &async_nats::Event) -> Option<String> {
    use async_nats::{ClientError, ConnectErrorKind, Event, ServerError};
    let refusals = [
        ConnectErrorKind::AuthorizationViolation,
        ConnectErrorKind::Authentication,
        ConnectErrorKind::Tls,
    ];
    match event {
        Event::ServerError(ServerError::AuthorizationViolation) => {
            Some(ConnectErrorKind::AuthorizationViolation.to_string())
        }
        Event::ClientError(ClientError::Other(reason))
            if refusals.iter().any(|kind| kind.to_string() == *reason) =>
        {
            Some(reason.clone())
        }
        _ => None,
    }
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
        // Reads go forward: the lines before this one are done with (holding them
        // made a read through the stream hold all of it).
        self.window.drop_before(offset);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<NatsSettings, String> {
        NatsSettings::from_env(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    fn tls(ca: Option<&str>, client: Option<(&str, &str)>) -> Option<NatsTls> {
        Some(NatsTls {
            ca: ca.map(PathBuf::from),
            client_cert: client.map(|(c, k)| (PathBuf::from(c), PathBuf::from(k))),
        })
    }

    #[test]
    fn nothing_set_is_no_auth_and_no_tls() {
        assert_eq!(settings(&[]).unwrap(), NatsSettings::default());
        // Empty values count as unset.
        assert_eq!(
            settings(&[(ENV_USER, ""), (ENV_TOKEN, ""), (ENV_CA, "")]).unwrap(),
            NatsSettings::default()
        );
    }

    #[test]
    fn each_auth_alone_is_accepted() {
        let user = settings(&[(ENV_USER, "app"), (ENV_PASSWORD, "s3cret")]).unwrap();
        assert_eq!(
            user.auth,
            NatsAuth::UserPassword {
                user: "app".into(),
                password: "s3cret".into()
            }
        );
        assert_eq!(user.tls, None);
        let token = settings(&[(ENV_TOKEN, "t0ken")]).unwrap();
        assert_eq!(token.auth, NatsAuth::Token("t0ken".into()));
        let creds = settings(&[(ENV_CREDS, "/etc/app.creds")]).unwrap();
        assert_eq!(creds.auth, NatsAuth::Creds("/etc/app.creds".into()));
    }

    #[test]
    fn tls_settings_are_accepted_with_or_without_auth() {
        let ca = settings(&[(ENV_CA, "/ca.pem")]).unwrap();
        assert_eq!(ca.auth, NatsAuth::None);
        assert_eq!(ca.tls, tls(Some("/ca.pem"), None));
        let mutual = settings(&[
            (ENV_CA, "/ca.pem"),
            (ENV_CERT, "/c.pem"),
            (ENV_KEY, "/k.pem"),
            (ENV_TOKEN, "t"),
        ])
        .unwrap();
        assert_eq!(mutual.auth, NatsAuth::Token("t".into()));
        assert_eq!(mutual.tls, tls(Some("/ca.pem"), Some(("/c.pem", "/k.pem"))));
        // A client certificate with the system's roots.
        let client = settings(&[(ENV_CERT, "/c.pem"), (ENV_KEY, "/k.pem")]).unwrap();
        assert_eq!(client.tls, tls(None, Some(("/c.pem", "/k.pem"))));
    }

    #[test]
    fn half_a_pair_is_rejected_naming_the_missing_variable() {
        let cases = [
            (vec![(ENV_USER, "app")], ENV_PASSWORD),
            (vec![(ENV_USER, "app"), (ENV_PASSWORD, "")], ENV_PASSWORD),
            (vec![(ENV_PASSWORD, "s3cret")], ENV_USER),
            (vec![(ENV_CA, "/ca.pem"), (ENV_CERT, "/c.pem")], ENV_KEY),
            (vec![(ENV_KEY, "/k.pem")], ENV_CERT),
        ];
        for (vars, missing) in cases {
            let e = settings(&vars).unwrap_err();
            assert!(
                e.contains(&format!("but {missing} is not")),
                "{vars:?}: {e}"
            );
        }
    }

    #[test]
    fn more_than_one_auth_is_rejected() {
        let cases = [
            vec![
                (ENV_USER, "app"),
                (ENV_PASSWORD, "s3cret"),
                (ENV_TOKEN, "t"),
            ],
            vec![(ENV_TOKEN, "t"), (ENV_CREDS, "/app.creds")],
            vec![
                (ENV_USER, "app"),
                (ENV_PASSWORD, "p"),
                (ENV_CREDS, "/a.creds"),
            ],
        ];
        for vars in cases {
            let e = settings(&vars).unwrap_err();
            assert!(e.contains("more than one NATS authentication"), "{e}");
        }
    }

    #[test]
    fn secrets_never_show_in_errors_or_debug() {
        let e = settings(&[(ENV_PASSWORD, "s3cret"), (ENV_TOKEN, "t0ken")]).unwrap_err();
        assert!(!e.contains("s3cret") && !e.contains("t0ken"), "{e}");
        let e = settings(&[
            (ENV_USER, "a"),
            (ENV_PASSWORD, "s3cret"),
            (ENV_TOKEN, "t0ken"),
        ])
        .unwrap_err();
        assert!(!e.contains("s3cret") && !e.contains("t0ken"), "{e}");
        for vars in [
            vec![(ENV_USER, "app"), (ENV_PASSWORD, "s3cret")],
            vec![(ENV_TOKEN, "s3cret")],
        ] {
            let shown = format!("{:?}", settings(&vars).unwrap());
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }

    #[test]
    fn a_missing_file_is_an_error_naming_its_variable_and_path() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for (var, vars) in [
            (ENV_CREDS, vec![(ENV_CREDS, "/nonexistent/app.creds")]),
            (ENV_CA, vec![(ENV_CA, "/nonexistent/ca.pem")]),
        ] {
            let s = settings(&vars).unwrap();
            let e = rt
                .block_on(s.apply(async_nats::ConnectOptions::new()))
                .err()
                .unwrap();
            assert!(e.starts_with(&format!("{var}=/nonexistent/")), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.creds");
        std::fs::write(&bad, "not a creds file").unwrap();
        let s = NatsSettings {
            auth: NatsAuth::Creds(bad),
            tls: None,
        };
        let e = rt
            .block_on(s.apply(async_nats::ConnectOptions::new()))
            .err()
            .unwrap();
        assert!(e.contains("not a usable .creds file"), "{e}");
    }

    #[test]
    fn refusals_are_told_from_ordinary_connection_failures() {
        use async_nats::{ClientError, Event, ServerError};
        assert_eq!(
            refusal_of(&Event::ServerError(ServerError::AuthorizationViolation)).as_deref(),
            Some("authorization violation")
        );
        assert_eq!(
            refusal_of(&Event::ClientError(ClientError::Other(
                "authorization violation".into()
            )))
            .as_deref(),
            Some("authorization violation")
        );
        assert_eq!(
            refusal_of(&Event::ClientError(ClientError::Other("TLS error".into()))).as_deref(),
            Some("TLS error")
        );
        assert_eq!(
            refusal_of(&Event::ClientError(ClientError::Other("IO error".into()))),
            None
        );
        assert_eq!(refusal_of(&Event::Disconnected), None);
    }
}
