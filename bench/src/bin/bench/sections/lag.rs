//! lag: loadgen's open-loop, fixed-rate orders (64 connections by default) for
//! LAG_SECONDS against a combined gateway, then split (command-svc + query-svc on
//! one log, orders posted to command-svc). Ours is the whole-run p99 of the read
//! side's `foldbook_lag_seconds` histogram in /metrics (every event of the run,
//! durable -> visible); the baseline is the hello-world's request p99 (loadgen's
//! `svc_ms_p99`, from each request's send to its answer) at the same offered rate. The rate is
//! LAG_RATE, else a quarter of the durable capacity the writes section measured
//! (DESIGN.md: "at a quarter of the durable capacity"), else 10000. Goal: <= 5x.
//! The per-second lines the read side logs (what scripts/lag.sh summarises) go to
//! the rounds.
//!
//! Then the latency of durable orders themselves at a fixed [`LATENCY_RATE`]
//! orders/s (issue 22): loadgen's p99 from when each request was due (open loop, no
//! coordinated omission) against a combined gateway; goal <= 2 ms, beside the
//! hello-world's p99 measured the same way at the same rate in the same round.

use super::{fmt, fresh_gateway, gateway_args, service_args};
use crate::runner::{Runner, remove_dir};
use foldbook_bench::prom::{Histogram, Quantile};
use foldbook_bench::results::{Goal, Row};
use foldbook_bench::summary::{LagLines, field};
use std::time::Duration;

/// Orders/s when neither LAG_RATE nor the writes section gives one.
const LAG_RATE_DEFAULT: f64 = 10_000.0;

/// The fixed rate of the order latency row.
const LATENCY_RATE: f64 = 10_000.0;

/// The p99 of durable orders at [`LATENCY_RATE`] the issue asks for, ms.
const LATENCY_P99_MS_MAX: f64 = 2.0;

/// The share of the offered rate a load must reach for its row to stand without
/// a caveat.
const RATE_REACHED_SHARE_MIN: f64 = 0.95;

/// How long the read side may take to apply the last orders after loadgen ends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(r: &mut Runner) -> anyhow::Result<()> {
    let rate = match (r.settings.lag_rate, r.durable_capacity) {
        (Some(rate), _) => rate,
        (None, Some(capacity)) => (capacity / 4.0).round().max(1.0),
        (None, None) => LAG_RATE_DEFAULT,
    };
    r.lag_rate = Some(rate);
    let s = r.settings.clone();
    r.say(format!(
        "lag: {} orders/s for {}s, hello-world, combined and split, {} rounds",
        fmt(rate),
        s.lag_s,
        s.rounds
    ));
    for round in 1..=s.rounds {
        hello_round(r, "lag", rate, round).await?;
        lag_round(r, "lag", Mode::Combined, rate, round).await?;
        lag_round(r, "lag", Mode::Split, rate, round).await?;
        hello_round(r, "latency", LATENCY_RATE, round).await?;
        latency_round(r, round).await?;
    }
    for mode in [Mode::Combined, Mode::Split] {
        let m = mode.name();
        // A load that fell short of the offered rate (on either side) makes the
        // comparison one at different rates: said beside yes/no.
        let short = |key: &str, who: &str| {
            r.median(key)
                .filter(|a| *a < RATE_REACHED_SHARE_MIN * rate)
                .map(|a| format!("{who} load reached only {}/s", fmt(a)))
        };
        let caveats: Vec<String> = [
            short(&format!("lag.{m}.rate"), "but the"),
            short("lag.hello.rate", "the baseline's"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let caveat = (!caveats.is_empty()).then(|| caveats.join("; "));
        let per_second = r
            .median(&format!("lag.{m}.sec_p99"))
            .map_or_else(|| "n/a".to_owned(), |p| format!("{p:.3}"));
        let row = Row::new(
            "lag",
            format!(
                "append -> visible lag p99, ms, {m}, {} orders/s (whole run, /metrics histogram; \
                 per-second p99 median {per_second}); baseline: hello-world request p99 at the same rate",
                fmt(rate)
            ),
            "ms",
            3,
            Some(r.fig("lag.hello.p99")),
            r.fig(&format!("lag.{m}.p99")),
            Some(Goal::ratio_at_most(5.0)),
        )
        .caveat(caveat);
        r.row(row);
    }
    let short = r
        .median("latency.ours.rate")
        .filter(|a| *a < RATE_REACHED_SHARE_MIN * LATENCY_RATE)
        .map(|a| format!("the load reached only {}/s", fmt(a)));
    r.row(
        Row::new(
            "lag",
            format!(
                "durable POST latency p99, ms, {} orders/s offered over {} connections, open loop \
                 (loadgen, from when each request was due), combined; beside: hello-world at the same rate",
                fmt(LATENCY_RATE),
                s.lag_connections
            ),
            "ms",
            3,
            Some(r.fig("latency.hello.due_p99")),
            r.fig("latency.ours.p99"),
            Some(Goal::value_at_most(LATENCY_P99_MS_MAX)),
        )
        .caveat(short),
    );
    Ok(())
}

/// loadgen's orders at [`LATENCY_RATE`] on a fresh combined gateway: records
/// `latency.ours.p99` (from when each was due), `.svc_p99` (from when it was sent)
/// and `.rate`.
async fn latency_round(r: &mut Runner, round: u32) -> anyhow::Result<()> {
    let name = format!("latency-{round}");
    let (mut gateway, dir) = fresh_gateway(r, &name, "always")?;
    let extra = loadgen_args(r, LATENCY_RATE);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (summary, ok, first_error) = r
        .loadgen(&name, &gateway.url, r.settings.lag_s, &extra)
        .await?;
    r.stop(&mut gateway)?;
    remove_dir(&dir)?;
    if !ok {
        r.note(format!(
            "latency round {round}: loadgen reported errors: {first_error}"
        ));
    }
    let p99 = field(&summary, "lat_ms_p99").unwrap_or(f64::NAN);
    r.add("latency.ours.p99", p99);
    r.add(
        "latency.ours.svc_p99",
        field(&summary, "svc_ms_p99").unwrap_or(f64::NAN),
    );
    r.add(
        "latency.ours.rate",
        field(&summary, "achieved_rate").unwrap_or(f64::NAN),
    );
    r.say(format!(
        "  latency round {round}: durable order p99 {p99:.3} ms from due; {summary}"
    ));
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Mode {
    Combined,
    Split,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Combined => "combined",
            Mode::Split => "split",
        }
    }
}

pub(super) fn loadgen_args(r: &Runner, rate: f64) -> Vec<String> {
    vec![
        "--rate".into(),
        rate.to_string(),
        "--connections".into(),
        r.settings.lag_connections.to_string(),
    ]
}

/// The baseline: loadgen's POSTs at `rate` to the hello-world, which answers every
/// path; records `KEY.hello.p99` (the request p99, send to answer), `.due_p99` and
/// `.rate`.
pub(super) async fn hello_round(
    r: &mut Runner,
    key: &str,
    rate: f64,
    round: u32,
) -> anyhow::Result<()> {
    let name = format!("{}-hello-{round}", key.replace('.', "-"));
    let what = key.replace('.', " ");
    let mut hello = r.start_hello(&format!("hello-{name}"))?;
    let extra = loadgen_args(r, rate);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (summary, ok, first_error) = r
        .loadgen(&name, &hello.url, r.settings.lag_s, &extra)
        .await?;
    r.stop(&mut hello)?;
    if !ok {
        r.note(format!(
            "{what} hello round {round}: loadgen reported errors: {first_error}"
        ));
    }
    // The request p99 from each request's send to its answer: what the server
    // took, without the generator's own lateness (`lat_ms_p99`, kept beside it).
    let p99 = field(&summary, "svc_ms_p99").unwrap_or(f64::NAN);
    r.add(&format!("{key}.hello.p99"), p99);
    r.add(
        &format!("{key}.hello.due_p99"),
        field(&summary, "lat_ms_p99").unwrap_or(f64::NAN),
    );
    r.add(
        &format!("{key}.hello.rate"),
        field(&summary, "achieved_rate").unwrap_or(f64::NAN),
    );
    r.say(format!(
        "  {what} hello round {round}: request p99 {p99:.3} ms; {summary}"
    ));
    Ok(())
}

/// One loadgen run against `mode`, its figures recorded under `KEY.MODE.*`.
pub(super) async fn lag_round(
    r: &mut Runner,
    key: &str,
    mode: Mode,
    rate: f64,
    round: u32,
) -> anyhow::Result<()> {
    let m = mode.name();
    let name = format!("{}-{m}-{round}", key.replace('.', "-"));
    let dir = r.fresh_dir(&name)?;
    let (mut write, mut read) = match mode {
        Mode::Combined => (
            None,
            r.start(
                &format!("gateway-{name}"),
                "gateway",
                &gateway_args(&dir, "always"),
            )?,
        ),
        Mode::Split => {
            let write = r.start(
                &format!("command-{name}"),
                "command-svc",
                &gateway_args(&dir, "always"),
            )?;
            let read = r.start(&format!("query-{name}"), "query-svc", &service_args(&dir))?;
            r.wait_ok(&read.url).await?;
            (Some(write), read)
        }
    };
    let target = write.as_ref().map_or(read.url.clone(), |w| w.url.clone());
    let extra = loadgen_args(r, rate);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (summary, ok, first_error) = r.loadgen(&name, &target, r.settings.lag_s, &extra).await?;
    if !ok {
        r.note(format!(
            "{key} {m} round {round}: loadgen reported errors: {first_error}"
        ));
    }
    let head = r.health_num(&target, "durable_seq").await? as u64;
    r.wait_applied(&read.url, head, DRAIN_TIMEOUT).await?;
    let samples = r.metrics(&read.url, &name).await?;
    if let Some(write) = write.as_mut() {
        r.stop(write)?;
    }
    r.stop(&mut read)?;
    remove_dir(&dir)?;
    let limit_s = match mode {
        Mode::Combined => 0.001,
        Mode::Split => 0.002,
    };
    let histogram = Histogram::from_samples(&samples, "foldbook_lag_seconds", &[]);
    let (p99_ms, within, count) = match &histogram {
        Some(h) => {
            let p99 = h.quantile(0.99);
            if let Some(Quantile::Above(bound)) = p99 {
                r.note(format!(
                    "{key} {m} round {round}: p99 beyond the last finite bucket ({} ms); the figure is that bound",
                    bound * 1000.0
                ));
            }
            (
                p99.map_or(f64::NAN, |q| q.value() * 1000.0),
                h.share_within(limit_s).unwrap_or(f64::NAN),
                h.count,
            )
        }
        None => {
            r.note(format!(
                "{key} {m} round {round}: no foldbook_lag_seconds histogram in /metrics"
            ));
            (f64::NAN, f64::NAN, 0.0)
        }
    };
    r.add(
        &format!("{key}.{m}.p99"),
        (p99_ms * 1000.0).round() / 1000.0,
    );
    r.add(
        &format!("{key}.{m}.within"),
        (within * 10_000.0).round() / 10_000.0,
    );
    r.add(&format!("{key}.{m}.count"), count);
    let lines = read.lines.lock().unwrap().clone();
    if let Some(l) = LagLines::from_log(lines.iter().map(String::as_str)) {
        let us = |ms: f64| (ms * 1000.0).round() / 1000.0;
        r.add(&format!("{key}.{m}.sec_p50"), us(l.p50_ms_median));
        r.add(&format!("{key}.{m}.sec_p99"), us(l.p99_ms_median));
        r.add(&format!("{key}.{m}.sec_p99_worst"), us(l.p99_ms_worst));
        r.add(&format!("{key}.{m}.max"), us(l.max_ms));
    }
    for key in ["achieved_rate", "late", "errors"] {
        let short = if key == "achieved_rate" { "rate" } else { key };
        r.add(
            &format!("{key}.{m}.{short}"),
            field(&summary, key).unwrap_or(f64::NAN),
        );
    }
    r.say(format!(
        "  {m} round {round}: whole-run p99 {p99_ms:.3} ms ({:.2}% within {} ms, {count} events); {summary}",
        within * 100.0,
        limit_s * 1000.0
    ));
    Ok(())
}
