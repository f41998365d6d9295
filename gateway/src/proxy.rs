//! Proxy mode: the gateway fronts a command-svc and one or more query-svc replicas.
//! Writes go to command-svc; reads go round robin to the healthy query-svc replicas
//! that hold the read's market (a background task checks each one's `/health` every
//! [`HEALTH_INTERVAL`], which also says which markets it holds: `query-svc
//! --markets`); `/markets/{symbol}/...` and `/events?market=S` go to replicas holding
//! that market, the other reads to replicas holding the default market; answer
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
    /// The markets it holds, from its last health answer (`None` until then: it
    /// is asked for any market).
    pub holds: std::sync::RwLock<Option<Holds>>,
}

/// The markets a replica holds, as its `/health` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holds {
    pub markets: Vec<String>,
    /// The deployment's default market.
    pub default: String,
    /// Whether it keeps the balances (accounts on, every market held).
    pub accounts: bool,
}

impl Holds {
    /// Its `/health` fields `markets` and `default_market`, if it has them.
    fn of(health: &serde_json::Value) -> Option<Holds> {
        let markets = (health["markets"].as_array()?.iter())
            .map(|m| m.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?;
        let default = health["default_market"].as_str()?.to_owned();
        let accounts = health["read_accounts_digest"].is_string();
        Some(Holds {
            markets,
            default,
            accounts,
        })
    }
}

/// The market a read is about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wanted<'a> {
    /// `/markets` itself: any replica answers it.
    Any,
    /// An unprefixed read: the default market's.
    Default,
    /// `/markets/{symbol}/...` or `/events?market=S`.
    Market(std::borrow::Cow<'a, str>),
    /// `/orders/{id}`: an order of any market. Replicas holding the default market
    /// are asked first; on a 404, replicas holding markets not asked yet.
    Order,
    /// `/users/{user}/balances`, `/assets`: balances, which only a replica holding
    /// every market keeps.
    Accounts,
}

fn wanted<'a>(path: &'a str, query: &'a str) -> Wanted<'a> {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next()) {
        (Some("markets"), None) => Wanted::Any,
        (Some("markets"), Some(symbol)) => Wanted::Market(symbol.into()),
        (Some("orders"), Some(_)) => Wanted::Order,
        (Some("assets"), _) => Wanted::Accounts,
        (Some("users"), Some(_)) if path.ends_with("/balances") => Wanted::Accounts,
        (Some("events"), _) => form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "market")
            .map_or(Wanted::Default, |(_, v)| Wanted::Market(v)),
        _ => Wanted::Default,
    }
}

impl Replica {
    /// Whether it holds what a read wants (unknown yet: maybe).
    fn serves(&self, wanted: &Wanted) -> bool {
        let holds = self.holds.read().expect("holds lock");
        match (&*holds, wanted) {
            (None, _) | (_, Wanted::Any | Wanted::Order) => true,
            (Some(h), Wanted::Default) => h.markets.contains(&h.default),
            (Some(h), Wanted::Market(m)) => h.markets.iter().any(|held| held == m),
            (Some(h), Wanted::Accounts) => h.accounts,
        }
    }
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
                    holds: std::sync::RwLock::new(None),
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

    /// Replicas to try for one read: those holding its market (all of them when
    /// none does, so that one answers why), healthy ones first, starting at the next
    /// in turn.
    fn read_order(&self, wanted: &Wanted) -> Vec<&Replica> {
        let n = self.queries.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut rotated: Vec<&Replica> = (0..n).map(|i| &self.queries[(start + i) % n]).collect();
        if *wanted == Wanted::Order {
            // Those holding the default market first (stable: the turn stays).
            rotated.sort_by_key(|r| !r.serves(&Wanted::Default));
        }
        let serving: Vec<&Replica> = rotated
            .iter()
            .copied()
            .filter(|r| r.serves(wanted))
            .collect();
        let chosen = if serving.is_empty() { rotated } else { serving };
        let (healthy, down): (Vec<_>, Vec<_>) = chosen
            .into_iter()
            .partition(|r| r.healthy.load(Ordering::Relaxed));
        healthy.into_iter().chain(down).collect()
    }

    /// Checks every replica's `/health` forever, every [`HEALTH_INTERVAL`].
    pub async fn check_health(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HEALTH_INTERVAL);
        loop {
            tick.tick().await;
            for replica in &self.queries {
                let answer = self
                    .client
                    .get(format!("{}/health", replica.url))
                    .timeout(HEALTH_TIMEOUT)
                    .send()
                    .await;
                let health = match answer {
                    Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
                    _ => None,
                };
                let ok = health.is_some();
                if let Some(holds) = health.as_ref().and_then(Holds::of) {
                    let mut known = replica.holds.write().expect("holds lock");
                    if known.as_ref() != Some(&holds) {
                        tracing::info!(replica = %replica.url, markets = ?holds.markets, "query-svc replica's markets");
                        *known = Some(holds);
                    }
                }
                if replica.healthy.swap(ok, Ordering::Relaxed) != ok {
                    tracing::warn!(replica = %replica.url, healthy = ok, "query-svc replica health changed");
                }
            }
        }
    }
}

/// The markets of the replicas an order lookup asked (all: one whose markets are
/// not known yet).
#[derive(Debug, Default)]
struct Asked {
    markets: Vec<String>,
    all: bool,
}

impl Asked {
    fn add(&mut self, replica: Option<&Replica>) {
        match replica.map(|r| r.holds.read().expect("holds lock").clone()) {
            Some(Some(holds)) => self.markets.extend(holds.markets),
            _ => self.all = true,
        }
    }

    /// Whether `replica` holds a market none of the asked ones does.
    fn misses(&self, replica: &Replica) -> bool {
        !self.all
            && match &*replica.holds.read().expect("holds lock") {
                Some(holds) => holds.markets.iter().any(|m| !self.markets.contains(m)),
                None => true,
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
        "buy" | "sell" | "cancel" | "deposit" | "withdraw" | "amend" | "cancel-all" => {
            Some(Side::Write)
        }
        "orderbook" | "orders" | "users" | "trades" | "events" | "markets" | "assets" => {
            Some(Side::Read)
        }
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
    let wanted = wanted(path, &query);
    let candidates: Vec<(&str, Option<&Replica>)> = match side {
        Side::Write => vec![(up.command.as_str(), None)],
        Side::Read => up
            .read_order(&wanted)
            .into_iter()
            .map(|r| (r.url.as_str(), Some(r)))
            .collect(),
    };
    let mut last_error = None;
    // For an order lookup: the markets of the replicas that answered 404.
    let mut asked = Asked::default();
    for (i, &(base, replica)) in candidates.iter().enumerate() {
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
            Ok(answer) => {
                if wanted == Wanted::Order && answer.status() == StatusCode::NOT_FOUND {
                    asked.add(replica);
                    let mut rest = candidates[i + 1..].iter().filter_map(|(_, r)| *r);
                    if rest.any(|r| asked.misses(r)) {
                        continue;
                    }
                }
                return Ok(relay(answer));
            }
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
        .map(|r| {
            let mut replica =
                serde_json::json!({ "url": r.url, "healthy": r.healthy.load(Ordering::Relaxed) });
            if let Some(holds) = &*r.holds.read().expect("holds lock") {
                replica["markets"] = holds.markets.clone().into();
                replica["accounts"] = holds.accounts.into();
            }
            replica
        })
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
    fn reads_want_their_market() {
        let market = |m: &'static str| Wanted::Market(m.into());
        for (path, query, want) in [
            ("/markets", "", Wanted::Any),
            ("/markets/ACME/orderbook", "depth=3", market("ACME")),
            ("/markets/ACME/trades", "", market("ACME")),
            ("/orderbook", "", Wanted::Default),
            ("/orders/3", "", Wanted::Order),
            ("/users/ann/orders", "", Wanted::Default),
            ("/events", "from=1&market=BOLT", market("BOLT")),
            ("/events", "from=1", Wanted::Default),
            ("/users/ann/balances", "at=3", Wanted::Accounts),
            ("/assets", "", Wanted::Accounts),
        ] {
            assert_eq!(wanted(path, query), want, "{path}?{query}");
        }
        let replica = |markets: &[&str]| Replica {
            url: String::new(),
            healthy: AtomicBool::new(true),
            holds: std::sync::RwLock::new(Some(Holds {
                markets: markets.iter().map(|m| m.to_string()).collect(),
                default: "FOLD".into(),
                accounts: markets.len() == 3,
            })),
        };
        let (fold, acme) = (replica(&["FOLD"]), replica(&["ACME", "BOLT"]));
        assert!(fold.serves(&Wanted::Default) && !acme.serves(&Wanted::Default));
        assert!(acme.serves(&market("BOLT")) && !fold.serves(&market("BOLT")));
        assert!(fold.serves(&Wanted::Any) && acme.serves(&Wanted::Any));
        let all = replica(&["FOLD", "ACME", "BOLT"]);
        assert!(all.serves(&Wanted::Accounts) && !acme.serves(&Wanted::Accounts));
        let mut asked = Asked::default();
        asked.add(Some(&fold));
        assert!(asked.misses(&acme) && !asked.misses(&replica(&["FOLD"])));
        asked.add(Some(&acme));
        assert!(!asked.misses(&acme), "every market asked");
        let unknown = Replica {
            url: String::new(),
            healthy: AtomicBool::new(true),
            holds: std::sync::RwLock::new(None),
        };
        assert!(
            unknown.serves(&market("ACME")),
            "asked until its health is known"
        );
        let health = serde_json::json!({"markets": ["ACME"], "default_market": "FOLD"});
        assert_eq!(
            Holds::of(&health),
            Some(Holds {
                markets: vec!["ACME".into()],
                default: "FOLD".into(),
                accounts: false,
            })
        );
    }

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
