//! The sections, one module each; each records its rounds and adds its rows to the
//! [`Runner`]. Baseline and ours alternate (baseline, ours, baseline, ours, ...),
//! one server at a time, each on 127.0.0.1 with a free port.

mod accounts;
mod curves;
mod lag;
mod markets;
mod nats;
mod reads;
mod replay;
mod rss;
mod soak;
mod writes;

use crate::cli::Section;
use crate::runner::Runner;
use std::ffi::OsString;
use std::path::Path;

/// Runs one section.
pub async fn run(runner: &mut Runner, section: Section) -> anyhow::Result<()> {
    match section {
        Section::Reads => reads::run(runner).await,
        Section::Writes => writes::run(runner).await,
        Section::Lag => lag::run(runner).await,
        Section::Replay => replay::run(runner).await,
        Section::Rss => rss::run(runner).await,
        Section::Soak => soak::run(runner).await,
        Section::Nats => nats::run(runner).await,
        Section::Markets => markets::run(runner).await,
        Section::Accounts => accounts::run(runner).await,
        Section::Curves => curves::run(runner).await,
    }
}

/// A gateway or command-svc on `dir` (its init.txt and log.txt), `--fsync FSYNC`,
/// no snapshots while running.
fn gateway_args(dir: &Path, fsync: &str) -> Vec<OsString> {
    let mut a: Vec<OsString> = ["--listen", "127.0.0.1:0", "--init"]
        .iter()
        .map(OsString::from)
        .collect();
    a.push(dir.join("init.txt").into());
    a.push("--log".into());
    a.push(dir.join("log.txt").into());
    a.extend(["--fsync", fsync, "--snapshot-every", "0"].map(OsString::from));
    a
}

/// A combined gateway (`--fsync FSYNC`) on a fresh data directory named `name` (a
/// copy of the shipped init.txt), its log `gateway-NAME.log`: the running gateway
/// and the directory, to be removed after it stops.
fn fresh_gateway(
    r: &Runner,
    name: &str,
    fsync: &str,
) -> anyhow::Result<(test_support::Proc, std::path::PathBuf)> {
    let dir = r.fresh_dir(name)?;
    let gateway = r.start(
        &format!("gateway-{name}"),
        "gateway",
        &gateway_args(&dir, fsync),
    )?;
    Ok((gateway, dir))
}

/// A query-svc (or a command-svc without `--fsync`) on `dir`, no snapshots while
/// running.
fn service_args(dir: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = ["--listen", "127.0.0.1:0", "--init"]
        .iter()
        .map(OsString::from)
        .collect();
    a.push(dir.join("init.txt").into());
    a.push("--log".into());
    a.push(dir.join("log.txt").into());
    a.extend(["--snapshot-every", "0"].map(OsString::from));
    a
}

/// `n` formatted with thousands grouped.
fn fmt(n: f64) -> String {
    foldbook_bench::results::group(n, 0)
}
