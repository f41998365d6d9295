//! Proxy mode: the gateway fronts a command-svc and one or more query-svc replicas.
//! Writes go to command-svc; reads go round robin to the healthy query-svc replicas
//! (a background task checks each one's `/health` every [`HEALTH_INTERVAL`]); answer
//! bodies are streamed through, so Server-Sent Events work too. Connections are
//! pooled. An upstream that is down or slow never makes a client hang: 502 when it
//! cannot be reached, 504 when it does not answer within the timeout, 503 when no
//! replica is available, each with a JSON error body.

use bytes::Bytes;
use futures_util::StreamExt;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;

/// Longest wait for a TCP connection to an upstream.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default longest wait for a whole upstream answer (reads may wait up to 10 s for
/// `min_seq`, so this is a little more).
pub const UPSTREAM_TIMEOUT_DEFAULT: Duration = Duration::from_secs(15);
/// Longest silence on a streamed answer (SSE sends keep-alives well within it).
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often each query replica's health is checked.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait for a health answer.
pub const HEALTH_TIMEOUT: Duration = Duration::from_millis(500);
/// Idle pooled connections kept per upstream.
pub const POOL_IDLE_PER_HOST: usize = 64;
/// Chunks buffered between an upstream answer and the client.
const STREAM_CHUNKS_BUFFERED: usize = 16;

/// Request headers passed on to upstreams.
const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "accept",
    "idempotency-key",
    "last-event-id",
    "authorization",
    "user-agent",
];
/// Answer headers passed back to clients.
const FORWARDED_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "x-event-seq",
    "x-applied-seq",
    "x-book-seq",
    "retry-after",
    "cache-control",
    "www-authenticate",
    "allow",
];

/// One query-svc replica.
#[derive(Debug)]
pub struct Replica {
    pub url: String,
    /// Result of the last health check or request.
    pub healthy: AtomicBool,
}

/// The upstreams and the pooled clients that reach them.
#[derive(Debug)]
pub struct Upstreams {
    pub command: String,
    pub queries: Vec<Replica>,
    /// Round-robin position over `queries`.
    next: AtomicUsize,
    /// For ordinary answers: a bound on the whole exchange.
    client: reqwest::Client,
    /// For streamed answers (`/events`): no total bound, an idle bound instead.
    stream_client: reqwest::Client,
    timeout: Duration,
}

impl Upstreams {
    pub fn new(command: &str, queries: &[String], timeout: Duration) -> Self {
        let base = || {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
                .tcp_nodelay(true)
        };
        Upstreams {
            command: command.trim_end_matches('/').to_owned(),
            queries: queries
                .iter()
                .map(|u| Replica {
                    url: u.trim_end_matches('/').to_owned(),
                    healthy: AtomicBool::new(true),
                })
                .collect(),
            next: AtomicUsize::new(0),
            client: base().build().expect("http client"),
            stream_client: base()
                .read_timeout(STREAM_IDLE_TIMEOUT)
                .build()
                .expect("http client"),
            timeout,
        }
    }

    /// Replicas to try for one read, healthy ones first, starting at the next in turn.
    fn read_order(&self) -> Vec<&Replica> {
        let n = self.queries.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let rotated = (0..n).map(|i| &self.queries[(start + i) % n]);
        let (healthy, down): (Vec<_>, Vec<_>) =
            rotated.partition(|r| r.healthy.load(Ordering::Relaxed));
        healthy.into_iter().chain(down).collect()
    }

    /// Checks every replica's `/health` forever, every [`HEALTH_INTERVAL`].
    pub async fn check_health(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HEALTH_INTERVAL);
        loop {
            tick.tick().await;
            for replica in &self.queries {
                let ok = self
                    .client
                    .get(format!("{}/health", replica.url))
                    .timeout(HEALTH_TIMEOUT)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if replica.healthy.swap(ok, Ordering::Relaxed) != ok {
                    tracing::warn!(replica = %replica.url, healthy = ok, "query-svc replica health changed");
                }
            }
        }
    }
}

/// Which side serves a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Write,
    Read,
}

fn side_of(path: &str) -> Option<Side> {
    let mut parts = path.trim_start_matches('/').split('/');
    let first = parts.next().unwrap_or("");
    // `/markets/{symbol}/buy/...` is a write; `/markets` and the rest under it, reads.
    let route = match (first, parts.nth(1)) {
        ("markets", Some(route @ ("buy" | "sell"))) => route,
        ("markets", _) => "markets",
        _ => first,
    };
    match route {
        "buy" | "sell" | "cancel" => Some(Side::Write),
        "orderbook" | "orders" | "users" | "trades" | "events" | "markets" => Some(Side::Read),
        _ => None,
    }
}

/// An error with its causes, `a: b: c`, since reqwest's own message leaves them out.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn json_error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    command_svc::http::error(status, message)
}

/// Passes one request on and its answer back.
///
/// One function: choosing the upstream, sending, mapping each failure to its
/// 502/503/504 answer and streaming the answer back are one request's life.
async fn forward(
    up: Arc<Upstreams>,
    method: Method,
    path: warp::path::FullPath,
    query: String,
    headers: HeaderMap,
) -> Result<Response, Infallible> {
    let path = path.as_str();
    let Some(side) = side_of(path) else {
        // The gateway's own routes (`/health`, `/`, ...) with another method.
        if shared_events::openapi::allowed_methods(path).is_some() {
            return Ok(json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed for this route",
            ));
        }
        return Ok(json_error(StatusCode::NOT_FOUND, "no such route"));
    };
    let target = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    let streamed = path.starts_with("/events");
    let client = if streamed {
        &up.stream_client
    } else {
        &up.client
    };
    let candidates: Vec<(&str, Option<&Replica>)> = match side {
        Side::Write => vec![(up.command.as_str(), None)],
        Side::Read => up
            .read_order()
            .into_iter()
            .map(|r| (r.url.as_str(), Some(r)))
            .collect(),
    };
    let mut last_error = None;
    for (base, replica) in candidates {
        let mut request = client.request(method.clone(), format!("{base}{target}"));
        if !streamed {
            request = request.timeout(up.timeout);
        }
        for name in FORWARDED_REQUEST_HEADERS {
            if let Some(value) = headers.get(*name) {
                request = request.header(*name, value);
            }
        }
        match request.send().await {
            Ok(answer) => return Ok(relay(answer)),
            Err(e) if e.is_timeout() => {
                metrics::counter!("foldbook_upstream_errors_total", "kind" => "timeout")
                    .increment(1);
                let what = if side == Side::Write {
                    "the write's outcome is unknown; retry it with the same Idempotency-Key"
                } else {
                    "retry later"
                };
                return Ok(json_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("{base} did not answer within {:?}: {what}", up.timeout),
                ));
            }
            Err(e) => {
                metrics::counter!("foldbook_upstream_errors_total", "kind" => "unreachable")
                    .increment(1);
                let e = with_causes(&e);
                tracing::warn!(upstream = base, error = %e, "upstream unreachable");
                if let Some(r) = replica {
                    r.healthy.store(false, Ordering::Relaxed);
                }
                last_error = Some(format!("{base} is unreachable: {e}"));
                // Only reads may go to another replica; a write is never sent twice.
                if side == Side::Write {
                    break;
                }
            }
        }
    }
    Ok(match (side, last_error) {
        (Side::Write, Some(e)) => json_error(StatusCode::BAD_GATEWAY, e),
        (Side::Read, Some(e)) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no query-svc replica is available (last: {e})"),
        ),
        (_, None) => json_error(StatusCode::SERVICE_UNAVAILABLE, "no upstream configured"),
    })
}

/// Turns an upstream answer into ours, streaming the body through a bounded channel.
fn relay(answer: reqwest::Response) -> Response {
    let status = answer.status();
    let mut headers = HeaderMap::new();
    for name in FORWARDED_RESPONSE_HEADERS {
        if let Some(value) = answer.headers().get(*name) {
            headers.insert(*name, value.clone());
        }
    }
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(STREAM_CHUNKS_BUFFERED);
    tokio::spawn(async move {
        let mut body = answer.bytes_stream();
        while let Some(chunk) = body.next().await {
            // The client went away: stop reading the upstream.
            if tx.send(chunk.map_err(std::io::Error::other)).await.is_err() {
                break;
            }
        }
    });
    let mut response = warp::Reply::into_response(warp::reply::stream(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Health of the gateway in proxy mode: its upstreams, as last seen.
async fn health(up: Arc<Upstreams>) -> Result<Response, Infallible> {
    let command = up
        .client
        .get(format!("{}/health", up.command))
        .timeout(HEALTH_TIMEOUT)
        .send()
        .await;
    let command = match command {
        Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
        _ => None,
    };
    let replicas: Vec<_> = up
        .queries
        .iter()
        .map(|r| serde_json::json!({ "url": r.url, "healthy": r.healthy.load(Ordering::Relaxed) }))
        .collect();
    let reads_ok = up.queries.iter().any(|r| r.healthy.load(Ordering::Relaxed));
    let ok = command.is_some() && reads_ok;
    let mut body = serde_json::Map::new();
    body.insert("status".into(), if ok { "ok" } else { "degraded" }.into());
    body.insert("mode".into(), "proxy".into());
    if let Some(seq) = command.as_ref().and_then(|c| c.get("durable_seq")) {
        body.insert("seq".into(), seq.clone());
    }
    body.insert(
        "command".into(),
        serde_json::json!({ "url": up.command, "healthy": command.is_some(), "health": command }),
    );
    body.insert("query".into(), replicas.into());
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(command_svc::http::json(status, &body))
}

/// Every route of the gateway in proxy mode.
pub fn routes(up: Arc<Upstreams>) -> BoxedFilter<(Response,)> {
    let with_up = warp::any().map(move || up.clone());
    let health = warp::path("health")
        .and(warp::path::end())
        .and(warp::get())
        .and(with_up.clone())
        .and_then(health);
    let proxied = with_up
        .and(warp::method())
        .and(warp::path::full())
        .and(command_svc::http::raw_query())
        .and(warp::header::headers_cloned())
        .and_then(forward);
    health
        .or(crate::index())
        .unify()
        .or(crate::openapi())
        .unify()
        .or(proxied)
        .unify()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_go_to_their_side() {
        for (path, side) in [
            ("/buy/alice/100", Some(Side::Write)),
            ("/markets/ACME/buy/alice/100", Some(Side::Write)),
            ("/markets/ACME/sell/alice/100", Some(Side::Write)),
            ("/cancel/alice/3", Some(Side::Write)),
            ("/markets", Some(Side::Read)),
            ("/markets/ACME/orderbook", Some(Side::Read)),
            ("/markets/ACME/trades", Some(Side::Read)),
            ("/orderbook", Some(Side::Read)),
            ("/events", Some(Side::Read)),
            ("/health", None),
        ] {
            assert_eq!(side_of(path), side, "{path}");
        }
    }
}
