//! rss: command-svc + query-svc (split) on genlog's BIG_EVENTS-event log; once
//! query-svc's applied_seq is the head and each one's RSS has settled, VmRSS of
//! each (/proc/PID/status), minus VmRSS of the same binary on an empty log, divided
//! by the number of resting orders. DESIGN.md's one absolute figure (bytes travel
//! between machines): <= 256 bytes per resting order.

use super::replay::big_log;
use super::{fmt, service_args};
use crate::runner::{Runner, remove_dir};
use anyhow::Context as _;
use foldbook_bench::results::{Goal, Row};
use std::path::Path;
use std::time::Duration;
use test_support::{Probe, Proc};

/// How long a process's RSS may take to settle once the log is applied.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// RSS has settled when two samples this far apart differ by at most
/// [`SETTLE_KB_MAX`] kB.
const SETTLE_GAP: Duration = Duration::from_millis(250);
const SETTLE_KB_MAX: u64 = 64;

pub async fn run(r: &mut Runner) -> anyhow::Result<()> {
    let s = r.settings.clone();
    r.say(format!(
        "rss: bytes per resting order at {} resting orders (split), {} rounds",
        fmt(s.big_events as f64),
        s.rounds
    ));
    let full = big_log(r, "rss", &[]).await?;
    let empty = r.work.join("rss-empty");
    std::fs::create_dir_all(&empty)?;
    std::fs::write(
        empty.join("init.txt"),
        "{\"next_order_id\": 1, \"orders\": []}\n",
    )?;
    for round in 1..=s.rounds {
        for leftover in ["snapshots", "log.txt", "log.txt.durable"] {
            let path = empty.join(leftover);
            if path.is_dir() {
                remove_dir(&path)?;
            } else if path.exists() {
                std::fs::remove_file(&path)?;
            }
        }
        remove_dir(&full.join("snapshots"))?;
        let (cmd0, qry0, _) = split_rss(r, &empty, &format!("rss-empty-{round}")).await?;
        let (cmd, qry, orders) = split_rss(r, &full, &format!("rss-full-{round}")).await?;
        r.add("rss.cmd.empty", cmd0 as f64);
        r.add("rss.qry.empty", qry0 as f64);
        r.add("rss.cmd.full", cmd as f64);
        r.add("rss.qry.full", qry as f64);
        let per = |full: u64, empty: u64| {
            ((full as f64 - empty as f64) * 1024.0 / orders as f64 * 10.0).round() / 10.0
        };
        r.add("rss.cmd.per", per(cmd, cmd0));
        r.add("rss.qry.per", per(qry, qry0));
        r.add("rss.orders", orders as f64);
        r.say(format!(
            "  round {round}: {orders} orders; command-svc {cmd0} -> {cmd} kB, query-svc {qry0} -> {qry} kB"
        ));
    }
    remove_dir(&full)?;
    remove_dir(&empty)?;
    for (side, label) in [("cmd", "command-svc"), ("qry", "query-svc")] {
        let row = Row::new(
            "rss",
            format!(
                "RSS per resting order, bytes, {label} ({} kB at {} orders - {} kB empty)",
                r.median(&format!("rss.{side}.full"))
                    .map_or("n/a".into(), fmt),
                fmt(s.big_events as f64),
                r.median(&format!("rss.{side}.empty"))
                    .map_or("n/a".into(), fmt),
            ),
            "bytes",
            1,
            None,
            r.fig(&format!("rss.{side}.per")),
            Some(Goal::value_at_most(256.0)),
        );
        r.row(row);
    }
    Ok(())
}

/// Starts command-svc + query-svc on `dir`, waits until the read side applied the
/// head and both RSS settled: (command-svc kB, query-svc kB, resting orders); stops both.
async fn split_rss(r: &Runner, dir: &Path, name: &str) -> anyhow::Result<(u64, u64, u64)> {
    let mut cmd = r.start(
        &format!("command-{name}"),
        "command-svc",
        &service_args(dir),
    )?;
    let head = r.health_num(&cmd.url, "durable_seq").await? as u64;
    let orders: u64 = cmd
        .log_field("write side replayed the log", "resting_orders")
        .and_then(|v| v.parse().ok())
        .context("no resting_orders in command-svc's replay line")?;
    let mut qry = r.start(&format!("query-{name}"), "query-svc", &service_args(dir))?;
    r.wait_applied(&qry.url, head, r.catchup_timeout()).await?;
    let cmd_kb = settled_rss(&cmd).await?;
    let qry_kb = settled_rss(&qry).await?;
    r.stop(&mut qry)?;
    r.stop(&mut cmd)?;
    Ok((cmd_kb, qry_kb, orders.max(1)))
}

/// RSS once two samples [`SETTLE_GAP`] apart are within [`SETTLE_KB_MAX`] (the
/// tailer's last batch and transient buffers released), at most [`SETTLE_TIMEOUT`].
pub(super) async fn settled_rss(proc: &Proc) -> anyhow::Result<u64> {
    let last = std::cell::Cell::new(proc.rss_kb().context("no VmRSS in /proc")?);
    let last = &last;
    let what = format!("a steady RSS of pid {}", proc.pid());
    Ok(
        test_support::poll_until(&what, SETTLE_TIMEOUT, || async move {
            tokio::time::sleep(SETTLE_GAP).await;
            let previous = last.get();
            match proc.rss_kb() {
                Some(now) if now.abs_diff(previous) <= SETTLE_KB_MAX => Probe::Done(now),
                Some(now) => {
                    last.set(now);
                    Probe::Pending(format!("{previous} kB -> {now} kB"))
                }
                None => Probe::Failed("the process is gone".into()),
            }
        })
        .await?,
    )
}
