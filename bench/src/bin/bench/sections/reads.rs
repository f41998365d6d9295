//! reads: `wrk -t1 -c64 GET /orderbook`, then `GET /markets/{symbol}/orderbook?depth=10`
//! (the default market, its best ten levels aggregated) on a combined gateway
//! (shipped init.txt) against `GET /` on the warp hello-world. Goals (DESIGN.md,
//! issue 22): >= 0.9x each.

use super::{fmt, fresh_gateway};
use crate::runner::{Runner, remove_dir};
use foldbook_bench::results::{Goal, Row};

pub async fn run(r: &mut Runner) -> anyhow::Result<()> {
    let s = r.settings.clone();
    let symbol = default_market(r)?;
    r.say(format!(
        "reads: GET /orderbook vs hello-world GET /, wrk -t1 -c64, {}s x {} rounds",
        s.duration_s, s.rounds
    ));
    let mut bad = 0;
    for round in 1..=s.rounds {
        let name = format!("reads-hello-{round}");
        let mut hello = r.start_hello(&format!("hello-{name}"))?;
        let report = r.wrk(&name, 64, &format!("{}/", hello.url), None).await?;
        r.stop(&mut hello)?;
        r.add("reads.base", report.requests_per_s);
        let name = format!("reads-ours-{round}");
        let (mut gateway, dir) = fresh_gateway(r, &name, "always")?;
        let report = r
            .wrk(&name, 64, &format!("{}/orderbook", gateway.url), None)
            .await?;
        r.add("reads.ours", report.requests_per_s);
        bad += report.bad();
        let depth_url = format!("{}/markets/{symbol}/orderbook?depth=10", gateway.url);
        let depth = r
            .wrk(&format!("{name}-depth"), 64, &depth_url, None)
            .await?;
        r.add("reads.depth.ours", depth.requests_per_s);
        bad += depth.bad();
        r.stop(&mut gateway)?;
        remove_dir(&dir)?;
        r.say(format!(
            "  round {round}: hello {} req/s, /orderbook {} req/s, ?depth=10 {} req/s",
            fmt(r.last("reads.base")),
            fmt(report.requests_per_s),
            fmt(depth.requests_per_s)
        ));
    }
    if bad > 0 {
        r.note(format!(
            "reads: {bad} non-2xx answers or socket errors in the measured runs"
        ));
    }
    let row = Row::new(
        "reads",
        "GET /orderbook, req/s (wrk -t1 -c64; baseline: hello-world GET /)",
        "req/s",
        0,
        Some(r.fig("reads.base")),
        r.fig("reads.ours"),
        Some(Goal::ratio_at_least(0.9)),
    )
    .caveat((bad > 0).then(|| "errors".to_owned()));
    r.row(row);
    let row = Row::new(
        "reads",
        format!(
            "GET /markets/{symbol}/orderbook?depth=10, req/s (same gateway, after /orderbook; \
             baseline: hello-world GET /)"
        ),
        "req/s",
        0,
        Some(r.fig("reads.base")),
        r.fig("reads.depth.ours"),
        Some(Goal::ratio_at_least(0.9)),
    )
    .caveat((bad > 0).then(|| "errors".to_owned()));
    r.row(row);
    Ok(())
}

/// The shipped init.txt's default market: its first.
fn default_market(r: &Runner) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(r.root.join("init.txt"))?;
    let init: serde_json::Value = serde_json::from_str(&text)?;
    Ok(init["markets"][0]["symbol"]
        .as_str()
        .unwrap_or("FOLD")
        .to_owned())
}
