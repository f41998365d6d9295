//! `command-svc`: the write side on its own (default `127.0.0.1:8081`), and
//! `command-svc verify`, an offline check of a log file.

use anyhow::Context;
use clap::{Parser, Subcommand};
use command_svc::cli::WriteArgs;
use shared_events::LogLocation;
use std::net::SocketAddr;
use std::path::PathBuf;

/// mimalloc instead of the system allocator: replay and the writer allocate and
/// free many small strings, often on different threads (the log decoder and the
/// fold), which mimalloc does markedly faster than glibc (see docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The foldbook write side: validates and matches orders, appends events to the log.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Log line format.
    #[arg(long, env = "FOLDBOOK_LOG_FORMAT", value_enum, default_value_t)]
    log_format: plumbing::telemetry::LogFormat,
    #[command(flatten)]
    limits: plumbing::serve::Limits,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "COMMAND_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    #[command(flatten)]
    write: WriteArgs,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Check a log offline: checksums, seq continuity, torn tail, and that every
    /// event fits the book. Exit status 0 when usable, 1 when not.
    Verify {
        /// The log to check, a file or `nats://HOST:PORT/STREAM` (default: `--log`).
        log: Option<LogLocation>,
    },
    /// Copy a log file into a JetStream stream (moving to a cluster; stop the writer
    /// first). Resumes an interrupted copy; the file's snapshots stay valid.
    CopyLog {
        /// The log file.
        from: PathBuf,
        /// The stream, `nats://HOST:PORT[,HOST:PORT...]/STREAM`.
        to: shared_events::JetStreamUrl,
        /// Copies of the stream, if it is created.
        #[arg(long, default_value_t = command_svc::NATS_REPLICAS_DEFAULT)]
        replicas: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    plumbing::telemetry::init(args.log_format);
    command_svc::describe::metrics();
    if let Some(Sub::Verify { log }) = &args.command {
        let log = log.as_ref().unwrap_or(&args.write.log);
        let init = args
            .write
            .init
            .exists()
            .then_some(args.write.init.as_path());
        let ok = command_svc::verify::verify(log, init, &mut std::io::stdout())
            .with_context(|| format!("reading {log}"))?;
        std::process::exit(if ok { 0 } else { 1 });
    }
    if let Some(Sub::CopyLog { from, to, replicas }) = &args.command {
        command_svc::copy_log::copy_log(from, to, *replicas, &mut std::io::stdout())
            .map_err(anyhow::Error::msg)
            .context("copying the log")?;
        return Ok(());
    }
    let auth = args.write.auth().map_err(anyhow::Error::msg)?;
    let (handle, writer) =
        command_svc::start(&args.write.config()).context("starting command-svc")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let mut failure = writer.failure.clone();
    plumbing::serve::serve(
        listener,
        plumbing::serve::Api::new(
            command_svc::http::routes(handle.clone(), auth.clone()),
            shared_events::openapi::ROUTE_LABELS,
            shared_events::openapi::allowed_methods,
        )
        .with_hot(command_svc::http::hot(handle, auth)),
        &args.limits,
        async move {
            let _ = failure.wait_for(Option::is_some).await;
        },
        || {},
    )
    .await?;
    writer
        .shutdown()
        .await
        .map_err(anyhow::Error::msg)
        .context("the writer failed")
}
