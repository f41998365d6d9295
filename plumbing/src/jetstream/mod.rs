//! NATS JetStream, domain-free: the client and its own runtime ([`JetStream`]),
//! connection settings ([`settings`]), an ordered consumer feeding a bounded buffer
//! ([`feed`]), and a stream read as consecutive lines with computed byte offsets
//! ([`reader`]). What the lines mean, and which streams exist, is the business of
//! the services: command-svc administers and publishes to its stream
//! (`command-svc/src/jetstream_admin.rs`, `jetstream_storage.rs`), query-svc tails it
//! (`query-svc/src/jetstream_source.rs`).
//!
//! ## A stream as a log of lines
//!
//! Each message is one line (without its newline) and the stream sequence numbers
//! the lines from 1 without gaps. Readers above the storage interfaces address bytes
//! by offset, as in a file; a stream has none, so they are computed: the offset of
//! line N is the length of lines 1..N-1, each with its newline, exactly as in the
//! file the same lines would make. Every reader computes them alike from where it
//! starts, and [`JetStreamReader::locate`] says which seq starts at an offset before
//! reading from there.
//!
//! ## Subjects and offsets
//!
//! A stream's messages are on its base subject (`foldbook.<STREAM>`) or on a subject
//! below it, one per key (`foldbook.<STREAM>.<KEY>`; the services key each market's
//! lines by its symbol, [`JetStreamAddress::subject_of`]). The writer puts each line's
//! offset in a header ([`OFFSET_HEADER`]), so a reader delivered only some subjects
//! ([`JetStreamReader::filtered`]) knows where each delivered line lies and that the
//! seqs between two of them are lines left out (their place known, their bytes not;
//! `lines::LeftOut`); a reader of every message checks the header against the
//! offset it computes. Messages of older builds have no header: they are all on the
//! base subject, which every reader takes.
//!
//! ## Threads
//!
//! async-nats is asynchronous; the services' writer, tailer and history readers are
//! plain threads, and start-up runs inside the binaries' own runtime, where blocking
//! on a runtime is not allowed. So the client lives on a small runtime of its own,
//! and [`JetStream::block_on`] runs a future there and waits for it on a plain
//! channel, from any thread. Reading uses an ordered consumer (recreated by the
//! client on any gap, so it delivers every message in order) feeding a bounded
//! buffer.
//!
//! ## Credentials and TLS
//!
//! [`JetStream::connect`] reads them from `FOLDBOOK_NATS_*` variables
//! ([`NatsSettings::from_env`]), so every binary and subcommand takes the same ones,
//! and secrets never reach the command line or the logs. A server that refuses the
//! client is logged at error level once per reason, and the reason is added to the
//! errors of requests that time out meanwhile ([`JetStream::explain`]).

pub mod feed;
pub mod reader;
pub mod settings;

pub use reader::JetStreamReader;
pub use settings::{NatsAuth, NatsSettings, NatsTls};

use async_nats::jetstream;
use async_nats::jetstream::stream;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest wait for a TCP connection to a server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the client pings its server. A server that stops answering without
/// closing the connection (frozen, or its host gone) is left, for another of the
/// cluster, after three pings without a pong: within seconds, well inside the
/// writer's publish retry window (the client's default of a minute is not).
pub const PING_INTERVAL: Duration = Duration::from_secs(2);
/// Longest wait for the answer to one JetStream API request or publish ack.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a message the stream says it has (a cluster that is electing a
/// leader can take seconds).
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes a feed may have delivered that its reader has not taken yet.
pub const FEED_BYTES_BUFFERED: usize = 8 << 20;
/// Pause before a failed consumer is created again.
pub const FEED_RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// How long a filtered feed waits without a message before it asks the stream
/// whether everything up to its last seq that it would be delivered has been (so
/// that lines of other subjects written meanwhile count as read): lines left out at
/// the stream's end are noticed within this, plus a few requests' round trips.
pub const FILTERED_IDLE_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// The header holding a message's line's byte offset in the log (decimal).
pub const OFFSET_HEADER: &str = "Foldbook-Offset";
/// Worker threads of the client's own runtime.
const RUNTIME_THREADS: usize = 1;

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

/// Where a stream is: the servers to try and the stream's name and subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamAddress {
    /// `nats://HOST:PORT` of each server; any one of them will do.
    pub servers: Vec<String>,
    /// The stream's name.
    pub stream: String,
    /// The subject its messages are published on.
    pub subject: String,
    /// How the address appears in logs and errors (never with credentials).
    pub shown: String,
}

impl JetStreamAddress {
    /// The subject of the lines keyed `key` (one token: no dots, no wildcards):
    /// `<subject>.<key>`.
    pub fn subject_of(&self, key: &str) -> String {
        debug_assert!(!key.is_empty() && !key.contains(['.', '*', '>', ' ']));
        format!("{}.{key}", self.subject)
    }

    /// Every keyed subject: `<subject>.*`.
    pub fn keyed_subjects(&self) -> String {
        format!("{}.*", self.subject)
    }
}

/// The offset an [`OFFSET_HEADER`] value says; `None` if it is not a plain decimal.
pub fn parse_offset(value: &str) -> Option<u64> {
    let plain = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value.len() == 1 || !value.starts_with('0'));
    plain.then(|| value.parse().ok()).flatten()
}

impl fmt::Display for JetStreamAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// What the stream holds: its first and last seq (`first > last` when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JetStreamBounds {
    pub first_seq: u64,
    pub last_seq: u64,
}

/// A connection to the servers of one stream, with the runtime it runs on.
pub struct JetStream {
    /// Where the stream is; its name and subject.
    url: JetStreamAddress,
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
    pub fn connect(url: &JetStreamAddress, name: &str) -> Result<Arc<JetStream>, JetStreamError> {
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
        let servers = url.servers.clone();
        let shown = url.to_string();
        let refusal: Arc<Mutex<Option<String>>> = Arc::default();
        let noted = refusal.clone();
        let options = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(CONNECT_TIMEOUT)
            .ping_interval(PING_INTERVAL)
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
            refusal,
            url: url.clone(),
            context,
            runtime: Some(runtime),
        }))
    }

    /// Where the stream is.
    pub fn url(&self) -> &JetStreamAddress {
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
        &self.url.subject
    }

    /// The JetStream API, for what this module does not wrap (publishing,
    /// stream administration).
    pub fn context(&self) -> &jetstream::Context {
        &self.context
    }

    /// The client's own runtime, for tasks that live as long as it does.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
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
    pub fn bounds(&self) -> io::Result<Option<JetStreamBounds>> {
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

/// The bounds a stream's state describes.
pub fn bounds_of(state: &stream::State) -> JetStreamBounds {
    if state.messages == 0 {
        return JetStreamBounds {
            first_seq: state.last_sequence + 1,
            last_seq: state.last_sequence,
        };
    }
    JetStreamBounds {
        first_seq: state.first_sequence,
        last_seq: state.last_sequence,
    }
}

/// Whether a lookup failed because the stream does not exist.
pub fn stream_missing(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        async_nats::jetstream::context::GetStreamErrorKind::JetStream(js)
            if js.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_subjects_sit_below_the_base_subject_and_offsets_are_plain_decimals() {
        let url = JetStreamAddress {
            servers: vec![],
            stream: "ORDERS".into(),
            subject: "foldbook.ORDERS".into(),
            shown: "nats://h/ORDERS".into(),
        };
        assert_eq!(url.subject_of("ACME"), "foldbook.ORDERS.ACME");
        assert_eq!(url.keyed_subjects(), "foldbook.ORDERS.*");
        assert_eq!(parse_offset("0"), Some(0));
        assert_eq!(parse_offset("123456"), Some(123456));
        for bad in ["", "-1", "+1", "01", "1 ", "1e3", "18446744073709551616"] {
            assert_eq!(parse_offset(bad), None, "{bad:?}");
        }
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
