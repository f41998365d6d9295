//! `gateway`: the whole API on one listener (default `127.0.0.1:8080`). Without
//! upstream URLs it runs in combined mode: write side and read side in this process.

use anyhow::Context;
use clap::Parser;
use command_svc::runtime;
use std::net::SocketAddr;

/// foldbook: an event-sourced order book. Combined mode: one process, one port.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    write: command_svc::cli::WriteArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::init_tracing();
    let args = Args::parse();
    let command_config = args.write.config();
    let (handle, writer) =
        command_svc::start(&command_config).context("starting the write side")?;
    let query_config = query_svc::Config {
        init: command_config.init.clone(),
        log: command_config.log.clone(),
        snapshots: command_config.snapshots.clone(),
        snapshot_every: command_config.snapshot_every,
        rebuild: false,
    };
    let query = query_svc::start(&query_config).context("starting the read side")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let mut failure = writer.failure.clone();
    let routes = gateway::combined_routes(handle, query.state.clone());
    runtime::serve(listener, routes, async move {
        let _ = failure.wait_for(Option::is_some).await;
    })
    .await?;
    query.stop();
    writer
        .shutdown()
        .await
        .map_err(anyhow::Error::msg)
        .context("the writer failed")
}
