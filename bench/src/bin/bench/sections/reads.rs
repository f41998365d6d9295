//! reads: `wrk -t1 -c64 GET /orderbook` on a combined gateway (shipped init.txt)
//! against `GET /` on the warp hello-world. Goal (DESIGN.md): >= 0.9x.

use super::{fmt, gateway_args};
use crate::runner::{Runner, remove_dir};
use foldbook_bench::results::{Goal, Row};

pub async fn run(r: &mut Runner) -> anyhow::Result<()> {
    let s = r.settings.clone();
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
        let dir = r.fresh_dir(&name)?;
        let mut gateway = r.start(
            &format!("gateway-{name}"),
            "gateway",
            &gateway_args(&dir, "always"),
        )?;
        let report = r
            .wrk(&name, 64, &format!("{}/orderbook", gateway.url), None)
            .await?;
        r.stop(&mut gateway)?;
        remove_dir(&dir)?;
        r.add("reads.ours", report.requests_per_s);
        bad += report.bad();
        r.say(format!(
            "  round {round}: hello {} req/s, /orderbook {} req/s",
            fmt(r.last("reads.base")),
            fmt(report.requests_per_s)
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
    Ok(())
}
