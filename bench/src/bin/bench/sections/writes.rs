//! writes: `wrk -t1` POSTing orders (scripts/bench/orders.lua alternates
//! `POST /buy/wrk/100` and `POST /sell/wrk/100`, qty 1, so orders cross at 100 and
//! the book stays small) at 1, 16 and 64 connections with `--fsync always`, and at
//! 64 with `--fsync never`; the baseline gets the same two-request Lua shape
//! POSTing to the hello-world's `/` (scripts/bench/hello-post.lua). A fresh data
//! directory for every run. Goals (DESIGN.md): durable at 64 connections >= 0.5x,
//! `--fsync never` >= 0.8x. At 1 connection, the median latency of a durable order
//! (wrk's `--latency`) against what it cannot do without, measured in the same
//! round: one `fdatasync` on the same disk (the median of [`FSYNC_SAMPLES`] appends
//! and syncs of a line in the run's data directory) plus one hello-world round
//! trip at 1 connection (its median); goal: within 1.5x.

use super::{fmt, gateway_args};
use crate::runner::{Runner, remove_dir};
use foldbook_bench::results::{Goal, Row};

/// Appends and syncs timed for the `fdatasync` baseline of the 1-connection row.
const FSYNC_SAMPLES: usize = 200;

pub async fn run(r: &mut Runner) -> anyhow::Result<()> {
    one(r, 64, "always", Some(0.5)).await?;
    r.durable_capacity = r.median("writes.c64.always.ours");
    one(r, 16, "always", None).await?;
    one(r, 1, "always", None).await?;
    one(r, 64, "never", Some(0.8)).await?;
    let fsync = r
        .median("writes.fsync_p50")
        .map_or("n/a".into(), |m| format!("{m:.3}"));
    let hello = (r.median("writes.c1.always.base_p50")).map_or("n/a".into(), |m| format!("{m:.3}"));
    r.row(Row::new(
        "writes",
        format!(
            "durable POST latency, ms, median at 1 conn (wrk --latency); baseline: one fdatasync \
             on the same disk (median {fsync} ms) + one hello-world round trip at 1 conn (median {hello} ms)"
        ),
        "ms",
        3,
        Some(r.fig("writes.c1.floor")),
        r.fig("writes.c1.always.ours_p50"),
        Some(Goal::ratio_at_most(1.5)),
    ));
    Ok(())
}

/// The median time, in ms, of appending a log-sized line to a file in `dir` and
/// `fdatasync`ing it, over [`FSYNC_SAMPLES`] rounds.
fn fsync_median_ms(dir: &std::path::Path) -> anyhow::Result<f64> {
    use std::io::Write as _;
    let path = dir.join("fsync-probe.txt");
    let mut file = std::fs::File::create(&path)?;
    let line = [b'x'; 220];
    let mut samples = Vec::with_capacity(FSYNC_SAMPLES);
    for _ in 0..FSYNC_SAMPLES {
        file.write_all(&line)?;
        let started = std::time::Instant::now();
        file.sync_data()?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(foldbook_bench::stats::median(&samples).unwrap_or(f64::NAN))
}

/// One connection count and fsync mode, ROUNDS rounds.
async fn one(
    r: &mut Runner,
    connections: u32,
    fsync: &str,
    goal: Option<f64>,
) -> anyhow::Result<()> {
    let s = r.settings.clone();
    let key = format!("writes.c{connections}.{fsync}");
    r.say(format!(
        "writes: POST orders, {connections} connections, --fsync {fsync}, {}s x {} rounds",
        s.duration_s, s.rounds
    ));
    let mut bad = 0;
    for round in 1..=s.rounds {
        let name = format!("{key}-hello-{round}");
        let mut hello = r.start_hello(&format!("hello-{name}"))?;
        let lua = r.lua("hello-post.lua");
        let report = r
            .wrk(&name, connections, &format!("{}/", hello.url), Some(&lua))
            .await?;
        r.stop(&mut hello)?;
        r.add(&format!("{key}.base"), report.requests_per_s);
        let hello_p50 = report.latency_p50_ms.unwrap_or(f64::NAN);
        r.add(&format!("{key}.base_p50"), hello_p50);
        let name = format!("{key}-ours-{round}");
        let dir = r.fresh_dir(&name)?;
        if connections == 1 && fsync == "always" {
            let probe = fsync_median_ms(&dir)?;
            r.add("writes.fsync_p50", probe);
            r.add("writes.c1.floor", probe + hello_p50);
        }
        let mut gateway = r.start(
            &format!("gateway-{name}"),
            "gateway",
            &gateway_args(&dir, fsync),
        )?;
        let lua = r.lua("orders.lua");
        let report = r.wrk(&name, connections, &gateway.url, Some(&lua)).await?;
        r.add(&format!("{key}.ours"), report.requests_per_s);
        r.add(
            &format!("{key}.ours_p50"),
            report.latency_p50_ms.unwrap_or(f64::NAN),
        );
        bad += report.bad();
        let events = r.health_num(&gateway.url, "events_appended").await?;
        let batches = r.health_num(&gateway.url, "fsync_batches").await?;
        if batches > 0.0 {
            r.add(
                &format!("{key}.batch"),
                (events / batches * 10.0).round() / 10.0,
            );
        }
        r.stop(&mut gateway)?;
        remove_dir(&dir)?;
        r.say(format!(
            "  round {round}: hello {} req/s, orders {} req/s",
            fmt(r.last(&format!("{key}.base"))),
            fmt(report.requests_per_s)
        ));
    }
    if bad > 0 {
        r.note(format!(
            "writes {connections} conns fsync {fsync}: {bad} non-2xx answers or socket errors in the measured runs"
        ));
    }
    let plural = if connections == 1 { "" } else { "s" };
    let batch = r
        .median(&format!("{key}.batch"))
        .map_or_else(|| "n/a".to_owned(), |b| format!("{b:.1}"));
    let durable = if fsync == "always" { "durable " } else { "" };
    let row = Row::new(
        "writes",
        format!(
            "{durable}POST /buy,/sell, req/s, {connections} conn{plural}, fsync {fsync} \
             (events per write batch: {batch}; baseline: hello-world POST /)"
        ),
        "req/s",
        0,
        Some(r.fig(&format!("{key}.base"))),
        r.fig(&format!("{key}.ours")),
        goal.map(Goal::ratio_at_least),
    )
    .caveat((bad > 0).then(|| "errors".to_owned()));
    r.row(row);
    Ok(())
}
