//! `hello`: the benchmark's baseline (`bench`, scripts/bench.sh), a warp hello-world
//! built with the same warp, tokio runtime (`#[tokio::main]`, multi-threaded) and
//! release profile as the gateway. Every request (any method, any path: `GET /`
//! for wrk, loadgen's `POST /buy/...` and its `GET /health`) answers
//! `Hello, World!`.
//!
//! ```sh
//! cargo run --release -p foldbook-bench --bin hello -- --listen 127.0.0.1:0
//! ```
//!
//! Prints `listening on http://ADDR` on stderr once bound, like the services do.

use clap::Parser;
use std::net::SocketAddr;
use warp::Filter;

/// A warp hello-world, the baseline the gateway is compared with.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "HELLO_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    warp::serve(warp::any().map(|| "Hello, World!"))
        .incoming(listener)
        .run()
        .await;
    Ok(())
}
