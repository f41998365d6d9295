//! `command-svc`: the write side on its own (default `127.0.0.1:8081`).

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The foldbook write side: validates and matches orders, appends events to the log.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "COMMAND_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Genesis state file.
    #[arg(long, env = "FOLDBOOK_INIT", default_value = "init.txt")]
    init: PathBuf,
    /// Event log file (created if missing; locked while running).
    #[arg(long, env = "FOLDBOOK_LOG", default_value = "log.txt")]
    log: PathBuf,
    /// `always`: fdatasync before every answer; `never`: no durability (benchmarks).
    #[arg(long, env = "FOLDBOOK_FSYNC", value_enum, default_value_t)]
    fsync: command_svc::FsyncMode,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    command_svc::runtime::init_tracing();
    let args = Args::parse();
    let config = command_svc::Config {
        init: args.init,
        log: args.log,
        fsync: args.fsync,
    };
    let (handle, writer) = command_svc::start(&config).context("starting command-svc")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let mut failure = writer.failure.clone();
    command_svc::runtime::serve(listener, command_svc::http::routes(handle), async move {
        let _ = failure.wait_for(Option::is_some).await;
    })
    .await?;
    writer
        .shutdown()
        .await
        .map_err(anyhow::Error::msg)
        .context("the writer failed")
}
