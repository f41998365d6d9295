//! Process glue shared by the three binaries (query-svc includes this file by path):
//! tracing setup (text or JSON), the Prometheus recorder and `/metrics`, per-request
//! counters, stop signals, and serving routes with a bounded graceful shutdown.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::net::TcpListener;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// Longest time in-flight requests get to finish after a stop signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log shippers and `scripts/lag.sh`).
    Json,
}

/// Sets up the process: logs to stderr at `RUST_LOG` (default `info`) in `format`,
/// and the Prometheus recorder, before anything records a metric.
pub fn init(format: LogFormat) {
    disable_transparent_huge_pages();
    metrics();
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Opts this process out of transparent huge pages. With THP set to `always` (a
/// common distribution default), the allocator's small purges split huge pages
/// that the next allocation faults in and zeroes again, 2 MiB at a time: building
/// a million-order model then spent more time in the kernel clearing pages than
/// folding events (replay measured 1.6x slower; README, Performance). Failure is
/// harmless (an old kernel): the process just keeps the system's setting.
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag on this
    // process's memory map; no pointer is passed.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Histogram buckets, by metric name suffix.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];
const EVENTS_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_events".into()), EVENTS_BUCKETS)
            })
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Only fails if another recorder is installed; then ours just stays empty.
        let _ = metrics::set_global_recorder(recorder);
        // Histogram samples pile up until they are folded into their buckets, which
        // only a render or an upkeep does: without a Prometheus scraping /metrics,
        // every recorded lag sample would stay in memory (found by the soak).
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(METRICS_UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            })
            .expect("spawning the metrics upkeep thread");
        handle
    })
}

/// How often recorded histogram samples are folded into their buckets.
pub const METRICS_UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The first path segments of every route any binary serves (besides `/`): the
/// labels of `foldbook_http_requests_total`.
pub const ROUTES: &[&str] = &[
    "buy",
    "sell",
    "cancel",
    "orderbook",
    "orders",
    "users",
    "trades",
    "events",
    "health",
    "metrics",
    "openapi.json",
];

/// A bounded label for a request path: its first segment if it is one of ours.
/// The `foldbook_http_requests_total` counter of a route and status, looked up in the
/// recorder once and then kept: a lookup per request (hashing the labels, and a
/// string for the status) cost about 5% of a small read's time.
fn request_counter(route: &'static str, status: warp::http::StatusCode) -> metrics::Counter {
    type Counters =
        std::sync::RwLock<std::collections::HashMap<(&'static str, u16), metrics::Counter>>;
    static COUNTERS: OnceLock<Counters> = OnceLock::new();
    let counters = COUNTERS.get_or_init(Default::default);
    let key = (route, status.as_u16());
    if let Some(counter) = counters.read().expect("counters lock").get(&key) {
        return counter.clone();
    }
    let counter = metrics::counter!(
        "foldbook_http_requests_total",
        "route" => route,
        "status" => status.as_str().to_owned()
    );
    counters
        .write()
        .expect("counters lock")
        .entry(key)
        .or_insert(counter)
        .clone()
}

fn route_label(path: &str) -> &'static str {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if first.is_empty() {
        return "index";
    }
    ROUTES
        .iter()
        .find(|r| **r == first)
        .copied()
        .unwrap_or("other")
}

/// `routes` plus `GET /metrics`, with every request counted by route and status, and
/// every 405 carrying `Allow` (RFC 9110), the route's methods from the OpenAPI document.
pub fn instrument(routes: BoxedFilter<(Response,)>) -> BoxedFilter<(Response,)> {
    let handle = metrics();
    // `routes` answers every request (its errors already recovered into JSON), so this
    // route must answer another method itself, or `routes` would say 404.
    let metrics_route = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::method())
        .map(move |method: warp::http::Method| {
            if method != warp::http::Method::GET {
                return json_error(
                    warp::http::StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed for this route".to_owned(),
                );
            }
            warp::http::Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(handle.render().into())
                .expect("valid response")
        });
    warp::path::full()
        .and(metrics_route.or(routes).unify())
        .map(|path: warp::path::FullPath, mut response: Response| {
            let allow = warp::http::header::ALLOW;
            if response.status() == warp::http::StatusCode::METHOD_NOT_ALLOWED
                && !response.headers().contains_key(&allow)
                && let Some(methods) = shared_events::openapi::allowed_methods(path.as_str())
            {
                response
                    .headers_mut()
                    .insert(allow, warp::http::HeaderValue::from_static(methods));
            }
            response
        })
        .with(warp::log::custom(|info| {
            request_counter(route_label(info.path()), info.status()).increment(1);
        }))
        .map(warp::Reply::into_response)
        .boxed()
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Default bounds on what one client may hold or send; each is a flag.
pub const CONNECTIONS_MAX: usize = 4096;
pub const HEADER_TIMEOUT_MS: u64 = 10_000;
pub const HEADER_BYTES_MAX: usize = 16 * 1024;
pub const HEADERS_MAX: usize = 64;
pub const URI_BYTES_MAX: usize = 4096;
pub const BODY_BYTES_MAX: u64 = 16 * 1024;

/// Bounds on connections and requests, so slow or greedy clients cannot starve the
/// others or grow memory. Shared by every binary.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Most open connections; a connection beyond it is closed at once.
    #[arg(long, env = "FOLDBOOK_CONNECTIONS_MAX", default_value_t = CONNECTIONS_MAX)]
    pub connections_max: usize,
    /// A connection that has not sent a complete request head within this time,
    /// including an idle keep-alive connection between requests, is closed (slowloris).
    #[arg(long, env = "FOLDBOOK_HEADER_TIMEOUT_MS", default_value_t = HEADER_TIMEOUT_MS)]
    pub header_timeout_ms: u64,
    /// Largest request head (request line and headers); larger is 431.
    #[arg(long, env = "FOLDBOOK_HEADER_BYTES_MAX", default_value_t = HEADER_BYTES_MAX)]
    pub header_bytes_max: usize,
    /// Most request headers; more is 431.
    #[arg(long, env = "FOLDBOOK_HEADERS_MAX", default_value_t = HEADERS_MAX)]
    pub headers_max: usize,
    /// Longest request target (path and query); longer is 414.
    #[arg(long, env = "FOLDBOOK_URI_BYTES_MAX", default_value_t = URI_BYTES_MAX)]
    pub uri_bytes_max: usize,
    /// Largest request body (no route takes one); larger is 413.
    #[arg(long, env = "FOLDBOOK_BODY_BYTES_MAX", default_value_t = BODY_BYTES_MAX)]
    pub body_bytes_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections_max: CONNECTIONS_MAX,
            header_timeout_ms: HEADER_TIMEOUT_MS,
            header_bytes_max: HEADER_BYTES_MAX,
            headers_max: HEADERS_MAX,
            uri_bytes_max: URI_BYTES_MAX,
            body_bytes_max: BODY_BYTES_MAX,
        }
    }
}

fn json_error(status: warp::http::StatusCode, message: String) -> Response {
    use warp::Reply;
    warp::reply::with_status(
        warp::reply::json(&serde_json::json!({ "error": message })),
        status,
    )
    .into_response()
}

/// The answer for a request that breaks a bound checked before routing, if any.
fn over_limit<B>(limits: &Limits, req: &warp::http::Request<B>) -> Option<Response> {
    use warp::http::StatusCode;
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > limits.uri_bytes_max {
        return Some(json_error(
            StatusCode::URI_TOO_LONG,
            format!("request target longer than {} bytes", limits.uri_bytes_max),
        ));
    }
    let length = req
        .headers()
        .get(warp::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > limits.body_bytes_max) {
        return Some(json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {} bytes", limits.body_bytes_max),
        ));
    }
    None
}

/// Serves `routes` (plus `/metrics`) on `listener` within `limits` until a stop
/// signal or `fatal` resolves, then calls `on_stop` (to end long-lived answers such as
/// event streams), stops accepting and lets in-flight requests finish (at most
/// [`SHUTDOWN_GRACE`]). Logs `listening on http://ADDR` first, which scripts and
/// tests wait for.
///
/// The connections are served by hyper directly rather than through `warp::serve`,
/// which sets no header-read timeout and no connection cap.
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    limits: &Limits,
    fatal: impl Future<Output = ()> + Send + 'static,
    on_stop: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    use hyper::service::Service as _;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening on http://{addr}");
    let routes = hyper_util::service::TowerToHyperService::new(warp::service(instrument(routes)));
    let limits = std::sync::Arc::new(limits.clone());
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.connections_max));
    let open = metrics::gauge!("foldbook_connections_open");
    let refused = metrics::counter!("foldbook_connections_refused_total");
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_timeout_ms))
        .max_headers(limits.headers_max)
        .max_header_size(limits.header_bytes_max)
        .keep_alive(true);
    let stop = async move {
        tokio::select! {
            _ = stop_signal() => tracing::info!("stop signal: shutting down"),
            _ = fatal => tracing::error!("fatal error: shutting down"),
        }
    };
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.increment(1);
            tracing::debug!("connection refused: {} open", limits.connections_max);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (routes, limits, open) = (routes.clone(), limits.clone(), open.clone());
        let service = hyper::service::service_fn(move |req| {
            let (routes, limits) = (routes.clone(), limits.clone());
            async move {
                match over_limit(&limits, &req) {
                    Some(answer) => Ok(answer),
                    None => routes.call(req).await,
                }
            }
        });
        let conn =
            graceful.watch(builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        tokio::spawn(async move {
            open.increment(1.0);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            open.decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    on_stop();
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(())
}
