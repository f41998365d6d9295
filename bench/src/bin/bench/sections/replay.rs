//! replay: genlog writes a BIG_EVENTS-event log of resting, non-crossing orders.
//! The baseline is a plain single-threaded decode of the same lines in this process
//! (`shared_events::decode_line` on each, crc and JSON included). command-svc
//! replays the log from genesis (its `events_per_s` and `start_ms` from its "write
//! side replayed the log" line; wall time until /health answers), gets one order (a
//! clean stop writes a snapshot only when the state moved since the start), is
//! stopped with SIGTERM (snapshot) and started again from the snapshot; then the
//! same for query-svc (wall time until /health shows applied_seq = the head); then
//! query-svc again on a log with BIG_FINISHED more events (pairs that fill each
//! other), so that its snapshot also holds as many finished orders as it keeps by
//! default. Goals (DESIGN.md): replay >= 0.5x the plain decode; a start from a
//! snapshot <= 0.1x the replay from genesis of the same state.

use super::{fmt, service_args};
use crate::runner::{Runner, remove_dir};
use anyhow::Context as _;
use foldbook_bench::results::{Goal, Row};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long genlog may take to write the big log.
const GENLOG_TIMEOUT: Duration = Duration::from_secs(600);

pub async fn run(r: &mut Runner) -> anyhow::Result<()> {
    let s = r.settings.clone();
    r.say(format!(
        "replay: {}-event log, command-svc and query-svc, {} rounds",
        fmt(s.big_events as f64),
        s.rounds
    ));
    let dir = big_log(r, "replay", &[]).await?;
    for round in 1..=s.rounds {
        remove_dir(&dir.join("snapshots"))?;
        // The baseline: a plain decode of the same lines.
        let log = dir.join("log.txt");
        let (events, rate) = tokio::task::spawn_blocking(move || decode_rate(&log)).await??;
        // Each round adds one order (so that a clean stop writes a snapshot).
        anyhow::ensure!(
            events >= s.big_events && events < s.big_events + u64::from(round),
            "the log has {events} lines, not the {} generated plus one per round before",
            s.big_events
        );
        r.add("replay.decode.rate", rate.round());

        // Write side from genesis.
        let name = format!("replay-command-genesis-{round}");
        let mut cmd = r.start(&name, "command-svc", &service_args(&dir))?;
        r.wait_ok(&cmd.url).await?;
        r.add("replay.cmd.wall", ms_since(cmd.started()));
        let replayed = "write side replayed the log";
        r.add("replay.cmd.rate", log_num(&cmd, replayed, "events_per_s")?);
        r.add("replay.cmd.start", log_num(&cmd, replayed, "start_ms")?);
        place_one_order(r, &cmd.url).await?;
        r.stop(&mut cmd)?;
        anyhow::ensure!(
            cmd.logged("write side snapshot written"),
            "no write side snapshot at stop (logs/{name}.log)"
        );
        r.add(
            "replay.cmd.snapms",
            log_num(&cmd, "write side snapshot written", "ms")?,
        );

        // Write side from the snapshot.
        let name = format!("replay-command-snapshot-{round}");
        let (wall, start_ms, head) = command_from_snapshot(r, &name, &dir).await?;
        r.add("replay.cmdsnap.wall", wall);
        r.add("replay.cmdsnap.start", start_ms);

        // Read side from genesis (its own snapshots removed; the writer's durable
        // watermark, log.txt.durable, stays).
        remove_query_snapshots(&dir)?;
        let name = format!("replay-query-genesis-{round}");
        let mut qry = r.start(&name, "query-svc", &service_args(&dir))?;
        r.wait_applied(&qry.url, head, r.catchup_timeout()).await?;
        let wall = ms_since(qry.started());
        r.add("replay.qry.wall", wall);
        r.add("replay.qry.rate", (head as f64 / (wall / 1000.0)).round());
        r.stop(&mut qry)?;
        anyhow::ensure!(
            qry.logged("read side snapshot written"),
            "no read side snapshot at stop (logs/{name}.log)"
        );

        // Read side from its snapshot.
        let wall =
            query_from_snapshot(r, &format!("replay-query-snapshot-{round}"), &dir, head).await?;
        r.add("replay.qrysnap.wall", wall);
        r.say(format!(
            "  round {round}: decode {} events/s; command-svc replay {} events/s, start {} ms, \
             with snapshot {} ms; query-svc from genesis {} ms, with snapshot {wall} ms",
            fmt(r.last("replay.decode.rate")),
            fmt(r.last("replay.cmd.rate")),
            r.last("replay.cmd.wall"),
            r.last("replay.cmdsnap.wall"),
            r.last("replay.qry.wall"),
        ));
    }
    remove_dir(&dir)?;

    // Read side from a snapshot that also holds the finished orders it keeps.
    let finished = s.big_finished.to_string();
    let dir = big_log(r, "replay-finished", &["--finished", &finished]).await?;
    let mut cmd = r.start(
        "replay-finished-command",
        "command-svc",
        &service_args(&dir),
    )?;
    r.wait_ok(&cmd.url).await?;
    let head = r.health_num(&cmd.url, "durable_seq").await? as u64;
    r.stop(&mut cmd)?;
    // Its snapshot, once: a start that changes nothing does not rewrite it.
    let name = "replay-finished-query-genesis";
    let mut qry = r.start(name, "query-svc", &service_args(&dir))?;
    r.wait_applied(&qry.url, head, r.catchup_timeout()).await?;
    r.add("replay.qryfull.genesis", ms_since(qry.started()));
    r.stop(&mut qry)?;
    anyhow::ensure!(
        qry.logged("read side snapshot written"),
        "no read side snapshot at stop (logs/{name}.log)"
    );
    for round in 1..=s.rounds {
        let wall = query_from_snapshot(
            r,
            &format!("replay-finished-query-snapshot-{round}"),
            &dir,
            head,
        )
        .await?;
        r.add("replay.qryfull.wall", wall);
        r.say(format!(
            "  round {round}: query-svc with snapshot, {} finished orders besides: {wall} ms",
            fmt(s.big_finished as f64)
        ));
    }
    remove_dir(&dir)?;

    let n = fmt(s.big_events as f64);
    let decode = "baseline: a plain single-threaded decode of the same lines";
    let rows = [
        Row::new(
            "replay",
            format!(
                "replay, events/s, command-svc from genesis ({n} events; its events_per_s); {decode}"
            ),
            "events/s",
            0,
            Some(r.fig("replay.decode.rate")),
            r.fig("replay.cmd.rate"),
            Some(Goal::ratio_at_least(0.5)),
        ),
        Row::new(
            "replay",
            format!(
                "replay, events/s, query-svc from genesis ({n} events; head / time to applied_seq = head); {decode}"
            ),
            "events/s",
            0,
            Some(r.fig("replay.decode.rate")),
            r.fig("replay.qry.rate"),
            Some(Goal::ratio_at_least(0.5)),
        ),
        Row::new(
            "replay",
            format!(
                "start from a snapshot, ms, command-svc (exec to /health answering; log start_ms {}); \
                 baseline: its start from genesis (log start_ms {})",
                fmt_opt(r.median("replay.cmdsnap.start")),
                fmt_opt(r.median("replay.cmd.start"))
            ),
            "ms",
            0,
            Some(r.fig("replay.cmd.wall")),
            r.fig("replay.cmdsnap.wall"),
            Some(Goal::ratio_at_most(0.1)),
        ),
        Row::new(
            "replay",
            "start from a snapshot, ms, query-svc (exec to /health with applied_seq = head); \
             baseline: its start from genesis",
            "ms",
            0,
            Some(r.fig("replay.qry.wall")),
            r.fig("replay.qrysnap.wall"),
            Some(Goal::ratio_at_most(0.1)),
        ),
        Row::new(
            "replay",
            format!(
                "start from a snapshot, ms, query-svc, {n} resting and {} finished orders (the default \
                 --finished-orders-kept is 100 000); baseline: its start from genesis (one round)",
                fmt(s.big_finished as f64)
            ),
            "ms",
            0,
            Some(r.fig("replay.qryfull.genesis")),
            r.fig("replay.qryfull.wall"),
            Some(Goal::ratio_at_most(0.1)),
        ),
    ];
    for row in rows {
        r.row(row);
    }
    Ok(())
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), fmt)
}

/// A directory `work/NAME` with genlog's BIG_EVENTS-event init.txt + log.txt.
pub async fn big_log(r: &Runner, name: &str, extra: &[&str]) -> anyhow::Result<PathBuf> {
    log_of(r, name, r.settings.big_events, extra).await
}

/// A directory `work/NAME` with genlog's `events`-event init.txt + log.txt.
pub async fn log_of(
    r: &Runner,
    name: &str,
    events: u64,
    extra: &[&str],
) -> anyhow::Result<PathBuf> {
    let dir = r.work.join(name);
    remove_dir(&dir)?;
    let mut args = vec![events.to_string().into(), dir.clone().into_os_string()];
    args.extend(extra.iter().map(Into::into));
    let out = r
        .oneshot(
            &r.program("genlog")?,
            args,
            GENLOG_TIMEOUT,
            &format!("genlog-{name}.txt"),
        )
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "genlog failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(dir)
}

/// One order to command-svc at `url`, so that its clean stop writes a snapshot (it
/// does only when the state moved since the start). Price 1: it rests and crosses
/// nothing.
pub(super) async fn place_one_order(r: &Runner, url: &str) -> anyhow::Result<()> {
    let url = format!("{url}/buy/bench/1");
    r.client
        .post(&url)
        .send()
        .await
        .and_then(|a| a.error_for_status())
        .with_context(|| format!("POST {url}"))?;
    Ok(())
}

/// Starts command-svc on `dir`, which must start from its snapshot, waits until it
/// answers, stops it: the ms that took, its own `start_ms`, and the head it had.
pub(super) async fn command_from_snapshot(
    r: &mut Runner,
    name: &str,
    dir: &Path,
) -> anyhow::Result<(f64, f64, u64)> {
    let mut cmd = r.start(name, "command-svc", &service_args(dir))?;
    r.wait_ok(&cmd.url).await?;
    let wall = ms_since(cmd.started());
    anyhow::ensure!(
        cmd.logged("write side starts from a snapshot"),
        "command-svc did not start from the snapshot (logs/{name}.log)"
    );
    let start_ms = log_num(&cmd, "write side replayed the log", "start_ms")?;
    let head = r.health_num(&cmd.url, "durable_seq").await? as u64;
    r.stop(&mut cmd)?;
    Ok((wall, start_ms, head))
}

/// Starts query-svc on `dir`, which must start from its snapshot, waits until it
/// applied `head`: the ms that took.
pub(super) async fn query_from_snapshot(
    r: &mut Runner,
    name: &str,
    dir: &Path,
    head: u64,
) -> anyhow::Result<f64> {
    let mut qry = r.start(name, "query-svc", &service_args(dir))?;
    r.wait_applied(&qry.url, head, r.catchup_timeout()).await?;
    let wall = ms_since(qry.started());
    r.stop(&mut qry)?;
    anyhow::ensure!(
        qry.logged("read side starts from a snapshot"),
        "query-svc did not start from the snapshot (logs/{name}.log)"
    );
    Ok(wall)
}

pub(super) fn remove_query_snapshots(dir: &Path) -> anyhow::Result<()> {
    let snapshots = dir.join("snapshots");
    for entry in
        std::fs::read_dir(&snapshots).with_context(|| format!("reading {}", snapshots.display()))?
    {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("query-"))
        {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// A number from the last log line containing `text`.
pub(super) fn log_num(proc: &test_support::Proc, text: &str, key: &str) -> anyhow::Result<f64> {
    proc.log_field(text, key)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {key}=N in a {text:?} log line"))
}

pub(super) fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_millis() as f64
}

/// The baseline: reads `log` and decodes every line (checksum, JSON, schema
/// version) on this one thread, the envelopes dropped: (lines, lines/s).
pub(super) fn decode_rate(log: &Path) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    let bytes = std::fs::read(log).with_context(|| format!("reading {}", log.display()))?;
    let mut events = 0u64;
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let envelope = shared_events::decode_line(line)
            .map_err(|e| anyhow::anyhow!("line {} of {}: {e}", events + 1, log.display()))?;
        std::hint::black_box(envelope);
        events += 1;
    }
    Ok((
        events,
        events as f64 / started.elapsed().as_secs_f64().max(1e-9),
    ))
}
