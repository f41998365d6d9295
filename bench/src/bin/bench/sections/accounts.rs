//! accounts: what balances and several markets cost. Durable orders at 64
//! connections (the writes section's `wrk -t1`): the baseline is orders.lua on the
//! shipped `init.txt` (accounts off, every order in the default market); ours is
//! orders-markets.lua, the same orders spread over the three markets, on
//! `init-accounts.txt` with the orders' user `wrk` funded in every asset (every
//! order holds, every fill settles); rounds interleaved; then `GET /orderbook` on
//! each of the two gateways. Goal (issue 22): within 10% of the rows without them
//! (>= 0.9x). Then memory: command-svc and query-svc (split) on a genesis of
//! ACCOUNTS_USERS funded users (two assets each, no orders), VmRSS minus VmRSS on
//! the same markets without accounts, per user.

use super::{fmt, gateway_args, service_args};
use crate::runner::{Runner, remove_dir};
use anyhow::Context as _;
use foldbook_bench::results::{Goal, Row};
use std::path::Path;

/// Funded users of the memory rows.
const ACCOUNTS_USERS: u64 = 1_000_000;

pub async fn run(r: &mut Runner) -> anyhow::Result<()> {
    let s = r.settings.clone();
    r.say(format!(
        "accounts: durable POST orders at 64 connections, then GET /orderbook, with accounts off \
         in one market / on in three, {}s x {} rounds; RSS per funded user at {} users",
        s.duration_s,
        s.rounds,
        fmt(ACCOUNTS_USERS as f64)
    ));
    let mut bad = 0;
    for round in 1..=s.rounds {
        for (key, funded) in [("off", false), ("on", true)] {
            let name = format!("accounts-writes-{key}-{round}");
            let dir = r.fresh_dir(&name)?;
            if funded {
                write_funded_init(r, &dir)?;
            }
            let mut gateway = r.start(
                &format!("gateway-{name}"),
                "gateway",
                &gateway_args(&dir, "always"),
            )?;
            let lua = r.lua(if funded {
                "orders-markets.lua"
            } else {
                "orders.lua"
            });
            let report = r.wrk(&name, 64, &gateway.url, Some(&lua)).await?;
            r.add(&format!("accounts.writes.{key}"), report.requests_per_s);
            bad += report.bad();
            let book = format!("{}/orderbook", gateway.url);
            let reads = r.wrk(&format!("{name}-reads"), 64, &book, None).await?;
            r.add(&format!("accounts.reads.{key}"), reads.requests_per_s);
            bad += reads.bad();
            r.stop(&mut gateway)?;
            remove_dir(&dir)?;
        }
        r.say(format!(
            "  round {round}: orders: accounts off {} req/s, on {} req/s; reads: off {} req/s, on {} req/s",
            fmt(r.last("accounts.writes.off")),
            fmt(r.last("accounts.writes.on")),
            fmt(r.last("accounts.reads.off")),
            fmt(r.last("accounts.reads.on"))
        ));
    }
    if bad > 0 {
        r.note(format!(
            "accounts writes: {bad} non-2xx answers or socket errors in the measured runs"
        ));
    }
    r.row(
        Row::new(
            "accounts",
            "durable POST /buy,/sell, req/s, 64 conns, accounts on and 3 markets (init-accounts.txt, \
             user wrk funded: every order holds, every fill settles; orders-markets.lua); baseline: \
             accounts off, 1 market (init.txt, orders.lua)"
                .to_owned(),
            "req/s",
            0,
            Some(r.fig("accounts.writes.off")),
            r.fig("accounts.writes.on"),
            Some(Goal::ratio_at_least(0.9)),
        )
        .caveat((bad > 0).then(|| "errors".to_owned())),
    );
    r.row(
        Row::new(
            "accounts",
            "GET /orderbook, req/s, 64 conns, after those orders, accounts on and 3 markets; \
             baseline: accounts off, 1 market"
                .to_owned(),
            "req/s",
            0,
            Some(r.fig("accounts.reads.off")),
            r.fig("accounts.reads.on"),
            Some(Goal::ratio_at_least(0.9)),
        )
        .caveat((bad > 0).then(|| "errors".to_owned())),
    );

    let with = r.work.join("accounts-rss-on");
    let without = r.work.join("accounts-rss-off");
    for (dir, users) in [(&with, ACCOUNTS_USERS), (&without, 0)] {
        remove_dir(dir)?;
        std::fs::create_dir_all(dir)?;
        write_users_init(r, dir, users)?;
    }
    for round in 1..=s.rounds {
        for dir in [&with, &without] {
            for leftover in ["snapshots", "log.txt", "log.txt.durable"] {
                let path = dir.join(leftover);
                if path.is_dir() {
                    remove_dir(&path)?;
                } else if path.exists() {
                    std::fs::remove_file(&path)?;
                }
            }
        }
        let (cmd0, qry0) = split_rss(r, &without, &format!("accounts-rss-off-{round}")).await?;
        let (cmd, qry) = split_rss(r, &with, &format!("accounts-rss-on-{round}")).await?;
        let per = |on: u64, off: u64| {
            ((on as f64 - off as f64) * 1024.0 / ACCOUNTS_USERS as f64 * 10.0).round() / 10.0
        };
        r.add("accounts.rss.cmd.on", cmd as f64);
        r.add("accounts.rss.cmd.off", cmd0 as f64);
        r.add("accounts.rss.qry.on", qry as f64);
        r.add("accounts.rss.qry.off", qry0 as f64);
        r.add("accounts.rss.cmd.per", per(cmd, cmd0));
        r.add("accounts.rss.qry.per", per(qry, qry0));
        r.say(format!(
            "  round {round}: command-svc {cmd0} -> {cmd} kB, query-svc {qry0} -> {qry} kB"
        ));
    }
    remove_dir(&with)?;
    remove_dir(&without)?;
    for (side, label) in [("cmd", "command-svc"), ("qry", "query-svc")] {
        r.row(Row::new(
            "accounts",
            format!(
                "RSS per funded user, bytes, {label} ({} kB at {} users with 2 assets each - {} kB without accounts)",
                r.median(&format!("accounts.rss.{side}.on"))
                    .map_or("n/a".into(), fmt),
                fmt(ACCOUNTS_USERS as f64),
                r.median(&format!("accounts.rss.{side}.off"))
                    .map_or("n/a".into(), fmt),
            ),
            "bytes",
            1,
            None,
            r.fig(&format!("accounts.rss.{side}.per")),
            None,
        ));
    }
    Ok(())
}

/// `init-accounts.txt` with the orders' user `wrk` funded in every asset far
/// beyond what a run spends (it buys and sells 1 at a time against itself and the
/// books).
fn write_funded_init(r: &Runner, dir: &Path) -> anyhow::Result<()> {
    let path = r.root.join("init-accounts.txt");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut init: serde_json::Value = serde_json::from_str(&text)?;
    let (money, goods) = (1_000_000_000_000u64, 1_000_000_000u64);
    init["accounts"]["wrk"] = serde_json::json!({
        "USD": money, "EUR": money, "FOLD": goods, "ACME": goods, "BOLT": goods
    });
    std::fs::write(dir.join("init.txt"), serde_json::to_vec_pretty(&init)?)?;
    Ok(())
}

/// The shipped `init.txt`'s markets, no orders, and `users` funded users (`u0`,
/// `u1`, ...) with USD and FOLD each (`users` = 0: accounts off).
fn write_users_init(r: &Runner, dir: &Path, users: u64) -> anyhow::Result<()> {
    let path = r.root.join("init.txt");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let shipped: serde_json::Value = serde_json::from_str(&text)?;
    let mut out = format!(
        "{{\"markets\": {}, \"next_order_id\": 1, \"orders\": []",
        shipped["markets"]
    );
    if users > 0 {
        out.push_str(", \"accounts\": {");
        for u in 0..users {
            if u > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                "\"u{u}\": {{\"USD\": {}, \"FOLD\": {}}}",
                1000 + u % 7,
                10 + u % 3
            ));
        }
        out.push('}');
    }
    out.push_str("}\n");
    std::fs::write(dir.join("init.txt"), out)?;
    Ok(())
}

/// Starts command-svc + query-svc on `dir`, waits until both answer and their RSS
/// settled: (command-svc kB, query-svc kB); stops both.
async fn split_rss(r: &Runner, dir: &Path, name: &str) -> anyhow::Result<(u64, u64)> {
    let mut cmd = r.start(
        &format!("command-{name}"),
        "command-svc",
        &service_args(dir),
    )?;
    r.wait_ok(&cmd.url).await?;
    let head = r.health_num(&cmd.url, "durable_seq").await? as u64;
    let mut qry = r.start(&format!("query-{name}"), "query-svc", &service_args(dir))?;
    r.wait_applied(&qry.url, head, r.catchup_timeout()).await?;
    let cmd_kb = super::rss::settled_rss(&cmd).await?;
    let qry_kb = super::rss::settled_rss(&qry).await?;
    r.stop(&mut qry)?;
    r.stop(&mut cmd)?;
    Ok((cmd_kb, qry_kb))
}
