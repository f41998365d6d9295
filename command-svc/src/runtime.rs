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
        handle
    })
}

/// A bounded label for a request path: its first segment if it is one of ours.
fn route_label(path: &str) -> &'static str {
    const ROUTES: &[&str] = &[
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
    ];
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

/// `routes` plus `GET /metrics`, with every request counted by route and status.
pub fn instrument(routes: BoxedFilter<(Response,)>) -> BoxedFilter<(Response,)> {
    let handle = metrics();
    let metrics_route = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            warp::http::Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(handle.render().into())
                .expect("valid response")
        });
    metrics_route
        .or(routes)
        .unify()
        .with(warp::log::custom(|info| {
            metrics::counter!(
                "foldbook_http_requests_total",
                "route" => route_label(info.path()),
                "status" => info.status().as_str().to_owned()
            )
            .increment(1);
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

/// Serves `routes` (plus `/metrics`) on `listener` until a stop signal or `fatal`
/// resolves, then calls `on_stop` (to end long-lived answers such as event streams),
/// stops accepting and lets in-flight requests finish (at most [`SHUTDOWN_GRACE`]).
/// Logs `listening on http://ADDR` first, which scripts and tests wait for.
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    fatal: impl Future<Output = ()> + Send + 'static,
    on_stop: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening on http://{addr}");
    let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        tokio::select! {
            _ = stop_signal() => tracing::info!("stop signal: shutting down"),
            _ = fatal => tracing::error!("fatal error: shutting down"),
        }
        on_stop();
        let _ = stopping_tx.send(());
    };
    let server = warp::serve(instrument(routes))
        .incoming(listener)
        .graceful(signal)
        .run();
    tokio::pin!(server);
    tokio::select! {
        _ = &mut server => {}
        _ = async { let _ = stopping.await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
        }
    }
    Ok(())
}
