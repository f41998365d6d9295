//! writes: `wrk -t1` POSTing orders (scripts/bench/orders.lua alternates
//! `POST /buy/wrk/100` and `POST /sell/wrk/100`, qty 1, so orders cross at 100 and
//! the book stays small) at 1, 16 and 64 connections with `--fsync always`, and at
//! 64 with `--fsync never`; the baseline gets the same two-request Lua shape
//! POSTing to the hello-world's `/` (scripts/bench/hello-post.lua). A fresh data
//! directory for every run. Goals (DESIGN.md): durable at 64 connections >= 0.5x,
//! `--fsync never` >= 0.8x.

use super::{fmt, gateway_args};
use crate::runner::{Runner, remove_dir};
use foldbook_bench::results::{Goal, Row};

pub async fn run(r: &mut Runner) -> anyhow::Result<()> {
    one(r, 64, "always", Some(0.5)).await?;
    r.durable_capacity = r.median("writes.c64.always.ours");
    one(r, 16, "always", None).await?;
    one(r, 1, "always", None).await?;
    one(r, 64, "never", Some(0.8)).await?;
    Ok(())
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
        let name = format!("{key}-ours-{round}");
        let dir = r.fresh_dir(&name)?;
        let mut gateway = r.start(
            &format!("gateway-{name}"),
            "gateway",
            &gateway_args(&dir, fsync),
        )?;
        let lua = r.lua("orders.lua");
        let report = r.wrk(&name, connections, &gateway.url, Some(&lua)).await?;
        r.add(&format!("{key}.ours"), report.requests_per_s);
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
