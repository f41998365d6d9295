//! curves: how the figures scale, drawn as SVG line charts (`foldbook_bench::chart`)
//! into target/bench/curves/, each with its baseline measured in the same run:
//!
//! - `throughput.svg`: durable orders/s against connections (CURVE_CONNECTIONS,
//!   1 to 256; orders.lua on a fresh combined gateway), beside the hello-world's
//!   POSTs at each count (hello-post.lua);
//! - `lag.svg`: the append -> visible lag p99 of a combined gateway against the
//!   offered rate (loadgen, open loop; CURVE_RATE_SHARES of the durable capacity
//!   measured at 64 connections just before), beside the hello-world's request p99
//!   at each rate;
//! - `replay.svg`: the time to replay a log from genesis against its length
//!   (CURVE_EVENTS, up to 10M events of genlog's resting orders), command-svc and
//!   query-svc, beside a plain single-threaded decode of the same lines;
//! - `snapshot.svg`: the time to start from a snapshot against the resting orders
//!   it holds (the same logs, stopped cleanly after their replay), command-svc and
//!   query-svc, beside command-svc's start from genesis.
//!
//! The throughput and lag points are medians of CURVE_ROUNDS rounds (baseline and
//! ours alternating, as in the other sections); the logs' points one run each (a
//! 10M-event log takes long); every value is in results.json's rounds.

use super::lag::{Mode, hello_round, lag_round};
use super::replay::{
    command_from_snapshot, decode_rate, log_num, log_of, ms_since, place_one_order,
    query_from_snapshot, remove_query_snapshots,
};
use super::{fmt, fresh_gateway, service_args};
use crate::runner::{Runner, remove_dir};
use anyhow::Context as _;
use foldbook_bench::chart::{Axis, Chart, Scale, Series};

pub async fn run(r: &mut Runner) -> anyhow::Result<()> {
    let out = r.root.join("target/bench/curves");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let capacity = throughput(r, &out).await?;
    lag(r, &out, capacity).await?;
    logs(r, &out).await?;
    r.note(format!(
        "curves: throughput.svg, lag.svg, replay.svg and snapshot.svg in {}",
        out.display()
    ));
    Ok(())
}

/// Durable orders/s and the hello-world's POSTs/s at each connection count: the
/// median orders/s at 64 connections (for the lag curve's rates).
async fn throughput(r: &mut Runner, out: &std::path::Path) -> anyhow::Result<f64> {
    let counts = r.settings.curve_connections.clone();
    r.say(format!(
        "curves: durable orders/s against connections {counts:?}, {}s each",
        r.settings.duration_s
    ));
    let (mut hello, mut ours) = (Vec::new(), Vec::new());
    let rounds = r.settings.curve_rounds;
    for &c in &counts {
        for round in 1..=rounds {
            let name = format!("curves-c{c}-hello-{round}");
            let mut server = r.start_hello(&format!("hello-{name}"))?;
            let lua = r.lua("hello-post.lua");
            let base = r
                .wrk(&name, c, &format!("{}/", server.url), Some(&lua))
                .await?;
            r.stop(&mut server)?;
            let name = format!("curves-c{c}-ours-{round}");
            let (mut gateway, dir) = fresh_gateway(r, &name, "always")?;
            let lua = r.lua("orders.lua");
            let report = r.wrk(&name, c, &gateway.url, Some(&lua)).await?;
            r.stop(&mut gateway)?;
            remove_dir(&dir)?;
            if report.bad() > 0 {
                r.note(format!(
                    "curves: {} bad answers at {c} connections",
                    report.bad()
                ));
            }
            r.add(&format!("curves.conn.{c}.base"), base.requests_per_s);
            r.add(&format!("curves.conn.{c}.ours"), report.requests_per_s);
        }
        let base = r
            .median(&format!("curves.conn.{c}.base"))
            .unwrap_or(f64::NAN);
        let durable = r
            .median(&format!("curves.conn.{c}.ours"))
            .unwrap_or(f64::NAN);
        hello.push((f64::from(c), base));
        ours.push((f64::from(c), durable));
        r.say(format!(
            "  {c} connections: hello {} req/s, durable orders {} req/s (medians of {rounds})",
            fmt(base),
            fmt(durable)
        ));
    }
    let capacity = r.median("curves.conn.64.ours");
    let chart = Chart {
        title: "Durable orders/s against connections".into(),
        subtitle: format!(
            "wrk -t1, {} s per run, the median of {} runs per point, baseline and ours alternating, fresh \
             combined gateway, fsync always; baseline: the warp hello-world POST",
            r.settings.duration_s, r.settings.curve_rounds
        ),
        x: Axis {
            label: "connections".into(),
            scale: Scale::Log,
        },
        y: Axis {
            label: "requests/s".into(),
            scale: Scale::Linear,
        },
        series: vec![
            series("hello-world POST /", hello, true),
            series("durable POST /buy,/sell", ours, false),
        ],
    };
    write(out, "throughput.svg", &chart)?;
    Ok(capacity.or(r.durable_capacity).unwrap_or(CAPACITY_FALLBACK))
}

/// Orders/s the lag curve's shares apply to when 64 connections were not measured.
const CAPACITY_FALLBACK: f64 = 40_000.0;

/// Lag p99 (combined) and the hello-world's request p99 at shares of `capacity`.
async fn lag(r: &mut Runner, out: &std::path::Path, capacity: f64) -> anyhow::Result<()> {
    let shares = r.settings.curve_rate_shares.clone();
    r.say(format!(
        "curves: lag p99 against the offered rate, {shares:?} of {} orders/s, {}s each",
        fmt(capacity),
        r.settings.lag_s
    ));
    let (mut hello, mut ours) = (Vec::new(), Vec::new());
    let rounds = r.settings.curve_rounds;
    for (i, share) in shares.iter().enumerate() {
        let rate = (capacity * share).round().max(1.0);
        let key = format!("curves.lag{i}");
        for round in 1..=rounds {
            hello_round(r, &key, rate, round).await?;
            lag_round(r, &key, Mode::Combined, rate, round).await?;
        }
        let base = r.median(&format!("{key}.hello.p99")).unwrap_or(f64::NAN);
        let lag = r.median(&format!("{key}.combined.p99")).unwrap_or(f64::NAN);
        r.add(&format!("{key}.rate"), rate);
        hello.push((rate, base));
        ours.push((rate, lag));
    }
    let chart = Chart {
        title: "Lag p99 against the offered rate".into(),
        subtitle: format!(
            "loadgen, open loop, {} connections, {} s per run, the median of {} runs per point; \
             combined gateway, fsync always; durable capacity at 64 connections: {} orders/s",
            r.settings.lag_connections,
            r.settings.lag_s,
            r.settings.curve_rounds,
            fmt(capacity)
        ),
        x: Axis {
            label: "offered orders/s".into(),
            scale: Scale::Linear,
        },
        y: Axis {
            label: "p99, ms".into(),
            scale: Scale::Linear,
        },
        series: vec![
            series("hello-world request p99", hello, true),
            series("append -> visible lag p99", ours, false),
        ],
    };
    write(out, "lag.svg", &chart)
}

/// Replay from genesis and start from a snapshot at each log length.
async fn logs(r: &mut Runner, out: &std::path::Path) -> anyhow::Result<()> {
    let lengths = r.settings.curve_events.clone();
    r.say(format!(
        "curves: replay and snapshot starts against log length {lengths:?}"
    ));
    let mut decode = Vec::new();
    let (mut cmd_replay, mut qry_replay) = (Vec::new(), Vec::new());
    let (mut cmd_genesis, mut cmd_snap, mut qry_snap) = (Vec::new(), Vec::new(), Vec::new());
    for &n in &lengths {
        let key = format!("curves.log.{n}");
        let dir = log_of(r, &format!("curves-log-{n}"), n, &[]).await?;
        let log = dir.join("log.txt");
        let (events, rate) = tokio::task::spawn_blocking(move || decode_rate(&log)).await??;
        let decode_s = events as f64 / rate;
        r.add(&format!("{key}.decode_s"), decode_s);

        // command-svc from genesis, one order (so that the clean stop writes a
        // snapshot), stopped; then from the snapshot.
        let name = format!("curves-command-genesis-{n}");
        let mut cmd = r.start(&name, "command-svc", &service_args(&dir))?;
        r.wait_ok(&cmd.url).await?;
        let genesis_ms = ms_since(cmd.started());
        let replayed = "write side replayed the log";
        let replay_s = log_num(&cmd, replayed, "start_ms")? / 1000.0;
        place_one_order(r, &cmd.url).await?;
        r.stop(&mut cmd)?;
        let name = format!("curves-command-snapshot-{n}");
        let (snapshot_ms, _, head) = command_from_snapshot(r, &name, &dir).await?;

        // query-svc from genesis (the time to applied_seq = head), stopped (its
        // snapshot); then from the snapshot.
        remove_query_snapshots(&dir)?;
        let name = format!("curves-query-genesis-{n}");
        let mut qry = r.start(&name, "query-svc", &service_args(&dir))?;
        r.wait_applied(&qry.url, head, r.catchup_timeout()).await?;
        let qry_genesis_ms = ms_since(qry.started());
        r.stop(&mut qry)?;
        let qry_snapshot_ms =
            query_from_snapshot(r, &format!("curves-query-snapshot-{n}"), &dir, head).await?;
        remove_dir(&dir)?;

        for (what, value) in [
            ("cmd_replay_s", replay_s),
            ("cmd_genesis_ms", genesis_ms),
            ("cmd_snapshot_ms", snapshot_ms),
            ("qry_genesis_ms", qry_genesis_ms),
            ("qry_snapshot_ms", qry_snapshot_ms),
        ] {
            r.add(&format!("{key}.{what}"), value);
        }
        let x = n as f64;
        decode.push((x, decode_s));
        cmd_replay.push((x, replay_s));
        qry_replay.push((x, qry_genesis_ms / 1000.0));
        cmd_genesis.push((x, genesis_ms));
        cmd_snap.push((x, snapshot_ms));
        qry_snap.push((x, qry_snapshot_ms));
        r.say(format!(
            "  {} events: decode {decode_s:.2} s; command-svc replay {replay_s:.2} s, from a \
             snapshot {snapshot_ms} ms; query-svc from genesis {qry_genesis_ms} ms, from a snapshot \
             {qry_snapshot_ms} ms",
            fmt(x)
        ));
    }
    let replay = Chart {
        title: "Replay from genesis against log length".into(),
        subtitle: "genlog's resting orders; command-svc: its start_ms; query-svc: exec to applied_seq = head; \
                   baseline: a plain single-threaded decode of the same lines"
            .into(),
        x: Axis {
            label: "events in the log".into(),
            scale: Scale::Log,
        },
        y: Axis {
            label: "seconds".into(),
            scale: Scale::Log,
        },
        series: vec![
            series("plain decode (crc + JSON)", decode, true),
            series("command-svc replay", cmd_replay, false),
            series("query-svc replay", qry_replay, false),
        ],
    };
    write(out, "replay.svg", &replay)?;
    let snapshot = Chart {
        title: "Start from a snapshot against resting orders".into(),
        subtitle:
            "exec to /health answering (query-svc: applied_seq = head), the logs of replay.svg; \
                   baseline: command-svc's start from genesis"
                .into(),
        x: Axis {
            label: "resting orders".into(),
            scale: Scale::Log,
        },
        y: Axis {
            label: "ms".into(),
            scale: Scale::Log,
        },
        series: vec![
            series("command-svc from genesis", cmd_genesis, true),
            series("command-svc from a snapshot", cmd_snap, false),
            series("query-svc from a snapshot", qry_snap, false),
        ],
    };
    write(out, "snapshot.svg", &snapshot)
}

fn series(name: &str, points: Vec<(f64, f64)>, dashed: bool) -> Series {
    Series {
        name: name.into(),
        points,
        dashed,
    }
}

fn write(dir: &std::path::Path, name: &str, chart: &Chart) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, chart.to_svg()).with_context(|| format!("writing {}", path.display()))
}
