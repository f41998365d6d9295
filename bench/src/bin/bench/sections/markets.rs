//! markets: the cost of many markets and of holding only some. genlog writes two
//! BIG_EVENTS-event logs of resting, non-crossing orders, one in one market and one
//! spread over MARKETS_MANY markets; command-svc and query-svc replay each from
//! genesis and start from their snapshots (the baseline is the one-market log of
//! the same size, in the same run). Then a log over MARKETS_SPLIT markets: query-svc
//! holding one of them (`--markets M0`) catches up on the whole log, against
//! query-svc holding all of them.

use super::{fmt, service_args};
use crate::runner::{Runner, remove_dir};
use foldbook_bench::results::Row;
use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

/// Markets of the many-markets log.
const MARKETS_MANY: u64 = 100;
/// Markets of the log a one-market replica reads.
const MARKETS_SPLIT: u64 = 10;

pub async fn run(r: &mut Runner) -> anyhow::Result<()> {
    let s = r.settings.clone();
    r.say(format!(
        "markets: {}-event logs in 1 and {MARKETS_MANY} markets, and a replica of 1 of {MARKETS_SPLIT}, {} rounds",
        fmt(s.big_events as f64),
        s.rounds
    ));
    let many = MARKETS_MANY.to_string();
    let one = super::replay::big_log(r, "markets-1", &[]).await?;
    let hundred = super::replay::big_log(r, "markets-many", &["--markets", &many]).await?;
    for round in 1..=s.rounds {
        for (key, dir) in [("one", &one), ("many", &hundred)] {
            let (replay, snapshot) = command_starts(r, key, dir, round).await?;
            r.add(&format!("markets.{key}.cmd.replay"), replay);
            r.add(&format!("markets.{key}.cmd.snap"), snapshot);
            let (replay, snapshot) = query_starts(r, key, dir, round).await?;
            r.add(&format!("markets.{key}.qry.replay"), replay);
            r.add(&format!("markets.{key}.qry.snap"), snapshot);
        }
        r.say(format!(
            "  round {round}: command-svc replay {} ms (1 market) / {} ms ({MARKETS_MANY}), \
             from a snapshot {} / {} ms; query-svc {} / {} ms, from a snapshot {} / {} ms",
            r.last("markets.one.cmd.replay"),
            r.last("markets.many.cmd.replay"),
            r.last("markets.one.cmd.snap"),
            r.last("markets.many.cmd.snap"),
            r.last("markets.one.qry.replay"),
            r.last("markets.many.qry.replay"),
            r.last("markets.one.qry.snap"),
            r.last("markets.many.qry.snap"),
        ));
    }
    remove_dir(&one)?;
    remove_dir(&hundred)?;

    let split = MARKETS_SPLIT.to_string();
    let dir = super::replay::big_log(r, "markets-split", &["--markets", &split]).await?;
    // The writer recovers the log and writes the watermark the replicas wait for.
    let mut cmd = r.start("markets-split-command", "command-svc", &service_args(&dir))?;
    r.wait_ok(&cmd.url).await?;
    let head = r.health_num(&cmd.url, "durable_seq").await? as u64;
    r.stop(&mut cmd)?;
    for round in 1..=s.rounds {
        for (key, markets) in [("all", None), ("one", Some("M0"))] {
            let mut args = service_args(&dir);
            args.push("--rebuild".into());
            if let Some(markets) = markets {
                args.extend([OsString::from("--markets"), markets.into()]);
            }
            let name = format!("markets-split-query-{key}-{round}");
            let mut qry = r.start(&name, "query-svc", &args)?;
            r.wait_applied(&qry.url, head, r.catchup_timeout()).await?;
            r.add(&format!("markets.split.{key}"), ms_since(qry.started()));
            r.stop(&mut qry)?;
        }
        r.say(format!(
            "  round {round}: query-svc catching up on {} events of {MARKETS_SPLIT} markets: all {} ms, one {} ms",
            fmt(head as f64),
            r.last("markets.split.all"),
            r.last("markets.split.one"),
        ));
    }
    remove_dir(&dir)?;

    let n = fmt(s.big_events as f64);
    let same = format!("baseline: the same {n} resting orders in 1 market");
    let rows = [
        (
            "markets.many.cmd.replay",
            "markets.one.cmd.replay",
            format!(
                "replay from genesis, ms, command-svc, {n} resting orders in {MARKETS_MANY} markets (exec to /health); {same}"
            ),
        ),
        (
            "markets.many.cmd.snap",
            "markets.one.cmd.snap",
            format!("start from a snapshot, ms, command-svc, {MARKETS_MANY} markets; {same}"),
        ),
        (
            "markets.many.qry.replay",
            "markets.one.qry.replay",
            format!(
                "replay from genesis, ms, query-svc, {MARKETS_MANY} markets (exec to applied_seq = head); {same}"
            ),
        ),
        (
            "markets.many.qry.snap",
            "markets.one.qry.snap",
            format!("start from a snapshot, ms, query-svc, {MARKETS_MANY} markets; {same}"),
        ),
        (
            "markets.split.one",
            "markets.split.all",
            format!(
                "catch-up from genesis, ms, query-svc --markets M0 (1 of {MARKETS_SPLIT} markets) on the whole {n}-event log; \
             baseline: query-svc holding all {MARKETS_SPLIT}"
            ),
        ),
    ];
    for (ours, baseline, metric) in rows {
        r.row(Row::new(
            "markets",
            metric,
            "ms",
            0,
            Some(r.fig(baseline)),
            r.fig(ours),
            None,
        ));
    }
    Ok(())
}

/// command-svc on `dir`: replay from genesis (snapshots removed), one order so that
/// its clean stop writes a snapshot, then a start from it: the two walls, in ms.
async fn command_starts(
    r: &mut Runner,
    key: &str,
    dir: &Path,
    round: u32,
) -> anyhow::Result<(f64, f64)> {
    remove_dir(&dir.join("snapshots"))?;
    let name = format!("markets-{key}-command-genesis-{round}");
    let mut cmd = r.start(&name, "command-svc", &service_args(dir))?;
    r.wait_ok(&cmd.url).await?;
    let replay = ms_since(cmd.started());
    // The default market of the one-market log; M0 of the others. Price 1 rests.
    let path = if key == "one" {
        "/buy/bench/1"
    } else {
        "/markets/M0/buy/bench/1"
    };
    let url = format!("{}{path}", cmd.url);
    r.client.post(&url).send().await?.error_for_status()?;
    r.stop(&mut cmd)?;
    anyhow::ensure!(
        cmd.logged("write side snapshot written"),
        "no write side snapshot at stop (logs/{name}.log)"
    );
    let name = format!("markets-{key}-command-snapshot-{round}");
    let mut cmd = r.start(&name, "command-svc", &service_args(dir))?;
    r.wait_ok(&cmd.url).await?;
    let snapshot = ms_since(cmd.started());
    r.stop(&mut cmd)?;
    anyhow::ensure!(
        cmd.logged("write side starts from a snapshot"),
        "command-svc did not start from the snapshot (logs/{name}.log)"
    );
    Ok((replay, snapshot))
}

/// query-svc on `dir` (after [`command_starts`]): from genesis (`--rebuild`, which
/// also writes its snapshot at the clean stop), then from that snapshot: the two
/// walls until applied_seq is the head, in ms.
async fn query_starts(
    r: &mut Runner,
    key: &str,
    dir: &Path,
    round: u32,
) -> anyhow::Result<(f64, f64)> {
    let mut cmd = r.start(
        &format!("markets-{key}-head-{round}"),
        "command-svc",
        &service_args(dir),
    )?;
    r.wait_ok(&cmd.url).await?;
    let head = r.health_num(&cmd.url, "durable_seq").await? as u64;
    r.stop(&mut cmd)?;
    let mut args = service_args(dir);
    args.push("--rebuild".into());
    let name = format!("markets-{key}-query-genesis-{round}");
    let mut qry = r.start(&name, "query-svc", &args)?;
    r.wait_applied(&qry.url, head, r.catchup_timeout()).await?;
    let replay = ms_since(qry.started());
    r.stop(&mut qry)?;
    anyhow::ensure!(
        qry.logged("read side snapshot written"),
        "no read side snapshot at stop (logs/{name}.log)"
    );
    let name = format!("markets-{key}-query-snapshot-{round}");
    let mut qry = r.start(&name, "query-svc", &service_args(dir))?;
    r.wait_applied(&qry.url, head, r.catchup_timeout()).await?;
    let snapshot = ms_since(qry.started());
    r.stop(&mut qry)?;
    anyhow::ensure!(
        qry.logged("read side starts from a snapshot"),
        "query-svc did not start from the snapshot (logs/{name}.log)"
    );
    Ok((replay, snapshot))
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_millis() as f64
}
