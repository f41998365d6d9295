//! soak (on request only): a combined gateway under loadgen's `mixed` pattern
//! (orders, cancels, reads; open loop at SOAK_RATE requests/s) for SOAK_SECONDS,
//! with `--finished-orders-kept SOAK_KEPT` so that retention is reached early; VmRSS
//! sampled every SOAK_SAMPLE seconds into logs/soak-rss.txt. RSS is flat when its
//! highest value in the second half is at most 1.10x its value at half-time (the
//! baseline column); no error answers means loadgen saw only 2xx, and cancels that
//! lost a race with a fill (404 "not resting", counted apart as `raced`).

use super::fmt;
use crate::runner::{Runner, remove_dir};
use foldbook_bench::results::{Goal, Row};
use foldbook_bench::summary::field;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

pub async fn run(r: &mut Runner) -> anyhow::Result<()> {
    let s = r.settings.clone();
    r.say(format!(
        "soak: mixed load at {} requests/s for {}s on a combined gateway (--finished-orders-kept {})",
        fmt(s.soak_rate),
        s.soak_s,
        s.soak_kept
    ));
    let dir = r.fresh_dir("soak")?;
    let mut args: Vec<OsString> = ["--listen", "127.0.0.1:0", "--init"]
        .map(OsString::from)
        .to_vec();
    args.extend([
        dir.join("init.txt").into(),
        "--log".into(),
        dir.join("log.txt").into(),
        "--finished-orders-kept".into(),
        s.soak_kept.to_string().into(),
    ]);
    let mut gateway = r.start("gateway-soak", "gateway", &args)?;
    let rate = s.soak_rate.to_string();
    let extra = [
        "--pattern",
        "mixed",
        "--rate",
        rate.as_str(),
        "--connections",
        "16",
    ];
    let (outcome, samples) = {
        let runner: &Runner = r;
        let loadgen = runner.loadgen("soak", &gateway.url, s.soak_s as f64, &extra);
        tokio::pin!(loadgen);
        let started = Instant::now();
        let mut samples: Vec<(f64, u64)> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(s.soak_sample_s.max(1)));
        let outcome = loop {
            tokio::select! {
                out = &mut loadgen => break out,
                _ = tick.tick() => {
                    let t = started.elapsed().as_secs_f64();
                    let kb = gateway.rss_kb().unwrap_or(0);
                    samples.push((t, kb));
                    if samples.len() % 6 == 1 {
                        runner.say(format!("  soak: {t:.0} s, RSS {kb} kB"));
                    }
                }
            }
        };
        samples.push((
            started.elapsed().as_secs_f64(),
            gateway.rss_kb().unwrap_or(0),
        ));
        (outcome, samples)
    };
    let (summary, ok, first_error) = outcome?;
    let events = r.health_num(&gateway.url, "events_appended").await?;
    r.stop(&mut gateway)?;
    remove_dir(&dir)?;
    if !ok {
        r.note(format!("soak: loadgen reported errors: {first_error}"));
    }
    let mut text = String::from("t_s rss_kb\n");
    for (t, kb) in &samples {
        let _ = writeln!(text, "{t:.0} {kb}");
    }
    std::fs::write(r.logs.join("soak-rss.txt"), text)?;
    let half = s.soak_s as f64 / 2.0;
    let second_half: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| *t >= half)
        .map(|(_, kb)| *kb)
        .collect();
    if let (Some(at_half), Some(max)) = (second_half.first(), second_half.iter().max()) {
        r.add("soak.rss_half_kb", *at_half as f64);
        r.add("soak.rss_max_kb", *max as f64);
    }
    r.add(
        "soak.rss_end_kb",
        samples.last().map_or(f64::NAN, |(_, kb)| *kb as f64),
    );
    for key in ["errors", "raced", "ok", "achieved_rate"] {
        r.add(
            &format!("soak.{key}"),
            field(&summary, key).unwrap_or(f64::NAN),
        );
    }
    r.add("soak.events", events);
    r.say(format!("  soak: {summary}"));
    let rows = [
        Row::new(
            "soak",
            format!(
                "soak, {} s mixed load at {} req/s: RSS, kB, highest in the second half (ours) / at half-time \
                 (baseline); {} kB at the end",
                s.soak_s,
                fmt(s.soak_rate),
                r.median("soak.rss_end_kb").map_or("n/a".into(), fmt)
            ),
            "kB",
            0,
            Some(r.fig("soak.rss_half_kb")),
            r.fig("soak.rss_max_kb"),
            Some(Goal::ratio_at_most(1.10)),
        ),
        Row::new(
            "soak",
            format!(
                "soak: error answers (of {} 2xx; {} cancels lost a race with a fill)",
                r.median("soak.ok").map_or("n/a".into(), fmt),
                r.median("soak.raced").map_or("n/a".into(), fmt)
            ),
            "answers",
            0,
            None,
            r.fig("soak.errors"),
            Some(Goal::value_at_most(0.0)),
        ),
    ];
    for row in rows {
        r.row(row);
    }
    Ok(())
}
