//! `gateway`: the whole API on one listener (default `127.0.0.1:8080`). Without
//! upstream URLs it runs in combined mode: write side and read side in this process;
//! with `--command-url` and `--query-url` it proxies to separately running services.

use anyhow::Context;
use clap::Parser;
use plumbing::serve::{Api, Limits};
use shared_events::LogLocation;
use shared_events::openapi::{ROUTE_LABELS, allowed_methods};
use std::net::SocketAddr;

/// mimalloc instead of the system allocator: replay and the writer allocate and
/// free many small strings, often on different threads (the log decoder and the
/// fold), which mimalloc does markedly faster than glibc (see docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// foldbook: an event-sourced order book. Combined mode: one process, one port.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Log line format.
    #[arg(long, env = "FOLDBOOK_LOG_FORMAT", value_enum, default_value_t)]
    log_format: plumbing::telemetry::LogFormat,
    #[command(flatten)]
    limits: Limits,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    write: command_svc::cli::WriteArgs,
    /// Proxy mode: the command-svc to send writes to (e.g. http://127.0.0.1:8081).
    #[arg(long, env = "GATEWAY_COMMAND_URL", requires = "query_url")]
    command_url: Option<String>,
    /// Proxy mode: a query-svc replica to send reads to; repeat for several (round
    /// robin over the healthy ones). In the environment: comma-separated.
    #[arg(
        long,
        env = "GATEWAY_QUERY_URL",
        value_delimiter = ',',
        requires = "command_url"
    )]
    query_url: Vec<String>,
    /// Require a known bearer token for reads too (needs `--auth-file`).
    #[arg(long, env = "FOLDBOOK_AUTH_READS")]
    auth_reads: bool,
    /// Finished (filled or cancelled) orders the read side keeps for
    /// `/orders/{id}` and user lists, besides every resting order.
    #[arg(long, env = "FOLDBOOK_FINISHED_ORDERS_KEPT", default_value_t = query_svc::projection::FINISHED_ORDERS_KEPT_DEFAULT)]
    finished_orders_kept: usize,
    /// Proxy mode: longest wait for an upstream's answer, in milliseconds.
    #[arg(long, env = "GATEWAY_UPSTREAM_TIMEOUT_MS", default_value_t = gateway::proxy::UPSTREAM_TIMEOUT_DEFAULT.as_millis() as u64)]
    upstream_timeout_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    plumbing::telemetry::init(args.log_format);
    gateway::describe_metrics();
    if let Some(command_url) = &args.command_url {
        return proxy(&args, command_url).await;
    }
    if args.auth_reads && args.write.auth_file.is_none() {
        anyhow::bail!("--auth-reads needs --auth-file");
    }
    let auth = args.write.auth().map_err(anyhow::Error::msg)?;
    command_svc::describe::metrics();
    query_svc::describe::metrics();
    let command_config = args.write.config();
    // On JetStream both sides use one client (one connection, one runtime).
    let js = match &command_config.log {
        LogLocation::JetStream(url) => Some(
            command_svc::connect(url, "foldbook gateway").context("starting the NATS client")?,
        ),
        LogLocation::File(_) => None,
    };
    let (handle, writer) =
        command_svc::start_with(&command_config, js.clone()).context("starting the write side")?;
    let query_config = query_svc::Config {
        init: command_config.init.clone(),
        log: command_config.log.clone(),
        snapshots: command_config.snapshots.clone(),
        snapshot_every: command_config.snapshot_every,
        rebuild: false,
        finished_orders_kept: args.finished_orders_kept,
        markets: None,
    };
    let query = query_svc::start_with(&query_config, js).context("starting the read side")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let mut failure = writer.failure.clone();
    let state = query.state.clone();
    let api = gateway::combined_api(handle, query.state.clone(), auth, args.auth_reads);
    plumbing::serve::serve(
        listener,
        api,
        &args.limits,
        async move {
            let _ = failure.wait_for(Option::is_some).await;
        },
        move || state.close_subscriptions(),
    )
    .await?;
    query.stop();
    writer
        .shutdown()
        .await
        .map_err(anyhow::Error::msg)
        .context("the writer failed")
}

/// Proxy mode: front separately running command-svc and query-svc processes.
async fn proxy(args: &Args, command_url: &str) -> anyhow::Result<()> {
    let timeout = std::time::Duration::from_millis(args.upstream_timeout_ms);
    let upstreams = std::sync::Arc::new(gateway::proxy::Upstreams::new(
        command_url,
        &args.query_url,
        timeout,
    ));
    tracing::info!(command = %command_url, query = ?args.query_url, "proxy mode");
    if args.write.auth_file.is_some() {
        // The services check tokens; the proxy passes Authorization through.
        tracing::warn!(
            "--auth-file is for combined mode; in proxy mode give it to command-svc and query-svc"
        );
    }
    let checker = tokio::spawn(upstreams.clone().check_health());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    plumbing::serve::serve(
        listener,
        Api::new(
            gateway::proxy::routes(upstreams),
            ROUTE_LABELS,
            allowed_methods,
        ),
        &args.limits,
        std::future::pending(),
        || {},
    )
    .await?;
    checker.abort();
    Ok(())
}
