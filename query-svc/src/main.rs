//! `query-svc`: the read side on its own (default `127.0.0.1:8082`).

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// mimalloc instead of the system allocator: replay and the writer allocate and
/// free many small strings, often on different threads (the log decoder and the
/// fold), which mimalloc does markedly faster than glibc (see docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The foldbook read side: tails the log and serves the order book.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Log line format.
    #[arg(long, env = "FOLDBOOK_LOG_FORMAT", value_enum, default_value_t)]
    log_format: plumbing::telemetry::LogFormat,
    #[command(flatten)]
    limits: plumbing::serve::Limits,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "QUERY_LISTEN", default_value = "127.0.0.1:8082")]
    listen: SocketAddr,
    /// Genesis state file (the same one command-svc uses).
    #[arg(long, env = "FOLDBOOK_INIT", default_value = "init.txt")]
    init: PathBuf,
    /// Event log to follow (waited for if missing): a file, or a NATS JetStream
    /// stream, `nats://HOST:PORT[,HOST:PORT...]/STREAM`.
    #[arg(long, env = "FOLDBOOK_LOG", default_value = "log.txt")]
    log: shared_events::LogLocation,
    /// Snapshot directory (default: `snapshots/` beside a log file,
    /// `snapshots-<STREAM>/` in the working directory for a stream).
    #[arg(long, env = "FOLDBOOK_SNAPSHOTS")]
    snapshots: Option<PathBuf>,
    /// Events between two snapshots (0: only at a clean stop).
    #[arg(long, env = "FOLDBOOK_SNAPSHOT_EVERY", default_value_t = query_svc::checkpoint::SNAPSHOT_EVERY_DEFAULT)]
    snapshot_every: u64,
    /// Ignore snapshots and rebuild the read model from genesis.
    #[arg(long)]
    rebuild: bool,
    /// Finished (filled or cancelled) orders kept for `/orders/{id}` and user
    /// lists, besides every resting order; older ones are forgotten.
    #[arg(long, env = "FOLDBOOK_FINISHED_ORDERS_KEPT", default_value_t = query_svc::projection::FINISHED_ORDERS_KEPT_DEFAULT)]
    finished_orders_kept: usize,
    /// Hold only these markets (symbols of `init.txt`, comma-separated): every line
    /// is still read and checked, only these markets' events are folded, and the
    /// others' routes answer 404. Default: every market.
    #[arg(long, env = "FOLDBOOK_MARKETS", value_delimiter = ',')]
    markets: Option<Vec<shared_events::Symbol>>,
    /// Bearer tokens (`TOKEN USER` or `sha256:HEX USER` per line); with
    /// `--auth-reads`, every read needs a known token.
    #[arg(long, env = "FOLDBOOK_AUTH_FILE")]
    auth_file: Option<PathBuf>,
    /// Require a known bearer token for reads too (needs `--auth-file`).
    #[arg(long, env = "FOLDBOOK_AUTH_READS", requires = "auth_file")]
    auth_reads: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    plumbing::telemetry::init(args.log_format);
    query_svc::describe::metrics();
    let config = query_svc::Config {
        init: args.init,
        log: args.log,
        snapshots: args.snapshots,
        snapshot_every: args.snapshot_every,
        rebuild: args.rebuild,
        finished_orders_kept: args.finished_orders_kept,
        markets: args.markets,
    };
    let read_auth = match (&args.auth_file, args.auth_reads) {
        (Some(path), true) => Some(std::sync::Arc::new(
            shared_events::auth::AuthTable::load(path).map_err(anyhow::Error::msg)?,
        )),
        _ => None,
    };
    let service = query_svc::start(&config).context("starting query-svc")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let state = service.state.clone();
    let mut api = plumbing::serve::Api::new(
        query_svc::http::routes(service.state.clone(), read_auth.clone()),
        shared_events::openapi::ROUTE_LABELS,
        shared_events::openapi::allowed_methods,
    );
    if let Some(hot) = query_svc::http::hot(service.state.clone(), read_auth.is_some()) {
        api = api.with_hot(hot);
    }
    plumbing::serve::serve(
        listener,
        api,
        &args.limits,
        std::future::pending(),
        move || state.close_subscriptions(),
    )
    .await?;
    service.stop();
    Ok(())
}
