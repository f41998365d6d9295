//! Process glue shared by the binaries: tracing setup, signals, and serving routes
//! with a bounded graceful shutdown.

use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// Longest time in-flight requests get to finish after a stop signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Logs to stderr at `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
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

/// Serves `routes` on `listener` until a stop signal or `fatal` resolves, then stops
/// accepting and lets in-flight requests finish (at most [`SHUTDOWN_GRACE`]).
/// Prints `listening on http://ADDR` first, which scripts and tests wait for.
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    fatal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening on http://{addr}");
    let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        tokio::select! {
            _ = stop_signal() => tracing::info!("stop signal: shutting down"),
            _ = fatal => tracing::error!("fatal error: shutting down"),
        }
        let _ = stopping_tx.send(());
    };
    let server = warp::serve(routes)
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
