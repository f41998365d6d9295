//! Accounts through the real binaries, on the shipped `init-accounts.txt`: nothing
//! bought without the money (422 with the amounts, nothing written), deposits and
//! withdrawals (idempotent, also after a restart), holds and settlement visible in
//! `/users/{user}/balances`, totals in `/assets`, time travel of balances, both
//! sides' digests agreeing, and balances identical after a clean stop and after
//! SIGKILL. Combined and split (command-svc, query-svc, a proxying gateway), on the
//! file log and on JetStream, with `--auth-file` (transfers need an operator token;
//! balances are one's own), and kill -9 under a load of deposits and orders.

use serde_json::Value;
use std::time::Duration;
use test_support::*;

/// The shipped genesis with accounts on.
const FUNDED_INIT: &str = include_str!("../../init-accounts.txt");

fn funded_workdir() -> tempfile::TempDir {
    let dir = workdir();
    std::fs::write(dir.path().join("init.txt"), FUNDED_INIT).unwrap();
    dir
}

/// `POST {base}{path}` (with an idempotency key, if any): status and body.
async fn post(base: &str, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = client().post(format!("{base}{path}"));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let res = request.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// `user`'s balances of `asset` at the read side: (available, held).
async fn balance(base: &str, user: &str, asset: &str, query: &str) -> (u64, u64) {
    let b = get_json(&client(), &format!("{base}/users/{user}/balances{query}")).await;
    let of = &b["balances"][asset];
    (
        of["available"].as_u64().unwrap_or(0),
        of["held"].as_u64().unwrap_or(0),
    )
}

/// Both sides' digests (books and accounts) agree at the same seq.
async fn assert_digests_agree(write: &str, read: &str) {
    let c = client();
    let w = get_json(&c, &format!("{write}/health")).await;
    let r = applied(&c, read, w["durable_seq"].clone(), Duration::from_secs(10)).await;
    assert_eq!(w["write_digest"], r["read_digest"], "{w}\n{r}");
    assert!(w["write_accounts_digest"].is_string(), "{w}");
    assert_eq!(
        w["write_accounts_digest"], r["read_accounts_digest"],
        "{w}\n{r}"
    );
}

/// The scenario, against a gateway (or proxy) at `base` whose write side's health is
/// at `write` and read side's at `read`. Returns the balances it ends with.
async fn trade_with_money(base: &str, write: &str, read: &str) -> Vec<(u64, u64)> {
    let c = client();
    // alice's bid of 10 at 99 (id 1) holds 990 of her 100 000 USD.
    assert_eq!(balance(base, "alice", "USD", "").await, (99_010, 990));
    let head = get_json(&c, &format!("{write}/health")).await["durable_seq"].clone();

    // zed has no account: nothing bought without the money, and nothing written.
    let (status, body) = post(base, "/buy/zed/101?qty=3", None).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        (&body["asset"], &body["needed"], &body["available"]),
        (&Value::from("USD"), &Value::from(303), &Value::from(0)),
        "{body}"
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("insufficient funds")
    );
    let (status, _) = post(base, "/markets/ACME/sell/zed/250", None).await;
    assert_eq!(status, 422, "a sell needs the base asset");
    let health = get_json(&c, &format!("{write}/health")).await;
    assert_eq!(
        health["durable_seq"], head,
        "a refused order writes nothing"
    );

    // A deposit, retried with its key: counted once.
    let (status, first) = post(base, "/deposit/zed/USD/1000", Some("top-up-1")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["transfer"], "deposit");
    let (status, again) = post(base, "/deposit/zed/USD/1000", Some("top-up-1")).await;
    assert_eq!((status, &again["seq"]), (200, &first["seq"]), "{again}");
    let (status, reused) = post(base, "/deposit/zed/USD/5", Some("top-up-1")).await;
    assert_eq!(status, 409, "{reused}");
    let deposit_seq = first["seq"].as_u64().unwrap();
    let q = format!("?min_seq={deposit_seq}");
    assert_eq!(balance(base, "zed", "USD", &q).await, (1000, 0));

    // zed buys 3 at 101 from erin (ask id 5): 303 paid, 3 FOLD received.
    let (status, placed) = post(base, "/buy/zed/101?qty=3", None).await;
    assert_eq!(status, 201, "{placed}");
    assert!(
        placed["balances"].is_array(),
        "the answer lists the changes: {placed}"
    );
    let q = format!("?min_seq={}", placed["seq"]);
    assert_eq!(balance(base, "zed", "USD", &q).await, (697, 0));
    assert_eq!(balance(base, "zed", "FOLD", "").await, (3, 0));
    assert_eq!(balance(base, "erin", "USD", "").await, (100_303, 0));
    assert_eq!(
        balance(base, "erin", "FOLD", "").await,
        (93, 4),
        "4 of her 7 still rest"
    );
    // A bid below its limit's worth: held at the limit until it fills or is cancelled.
    let (status, resting) = post(base, "/buy/zed/100?qty=2", None).await;
    assert_eq!(status, 201, "{resting}");
    let q = format!("?min_seq={}", resting["seq"]);
    assert_eq!(balance(base, "zed", "USD", &q).await, (497, 200));
    let id = resting["order"]["id"].as_u64().unwrap();
    let (status, cancelled) = post(base, &format!("/cancel/zed/{id}"), None).await;
    assert_eq!(status, 200, "{cancelled}");
    let q = format!("?min_seq={}", cancelled["seq"]);
    assert_eq!(balance(base, "zed", "USD", &q).await, (697, 0), "released");

    // Withdrawals: never beyond what is available.
    let (status, body) = post(base, "/withdraw/zed/USD/698", None).await;
    assert_eq!(
        (status, &body["needed"]),
        (422, &Value::from(698)),
        "{body}"
    );
    let (status, out) = post(base, "/withdraw/zed/USD/97", Some("pay-out-1")).await;
    assert_eq!(status, 200, "{out}");
    let q = format!("?min_seq={}", out["seq"]);
    assert_eq!(balance(base, "zed", "USD", &q).await, (600, 0));
    let (status, body) = post(base, "/deposit/zed/NOPE/5", None).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = post(base, "/deposit/zed/USD/0", None).await;
    assert_eq!(status, 400, "{body}");

    // Totals and time travel.
    let assets = get_json(&c, &format!("{base}/assets")).await;
    let usd = &assets["assets"]["USD"];
    assert_eq!(
        (&usd["deposited"], &usd["withdrawn"]),
        (&Value::from(1000), &Value::from(97)),
        "{assets}"
    );
    let past = format!("?at={deposit_seq}");
    assert_eq!(balance(base, "zed", "USD", &past).await, (1000, 0));
    assert_eq!(balance(base, "zed", "FOLD", &past).await, (0, 0));

    assert_digests_agree(write, read).await;
    all_balances(base).await
}

async fn all_balances(base: &str) -> Vec<(u64, u64)> {
    let mut end = Vec::new();
    for user in ["zed", "erin", "alice"] {
        for asset in ["USD", "FOLD"] {
            end.push(balance(base, user, asset, "").await);
        }
    }
    end
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_balances_follow_every_order_and_survive_restarts() {
    let dir = funded_workdir();
    let gw = Proc::start("gateway", dir.path(), &[]);
    let end = trade_with_money(&gw.url, &gw.url, &gw.url).await;
    assert!(gw.terminate().success());

    // From the snapshots of a clean stop, then after SIGKILL: the same balances,
    // and the deposit's key still known.
    let gw = Proc::start("gateway", dir.path(), &[]);
    caught_up(&client(), &gw.url).await;
    assert_eq!(all_balances(&gw.url).await, end, "after a clean restart");
    gw.kill9();
    let gw = Proc::start("gateway", dir.path(), &[]);
    caught_up(&client(), &gw.url).await;
    assert_eq!(all_balances(&gw.url).await, end, "after SIGKILL");
    let (status, _) = post(&gw.url, "/deposit/zed/USD/1000", Some("top-up-1")).await;
    assert_eq!(status, 200);
    assert_eq!(
        balance(&gw.url, "zed", "USD", "").await,
        end[0],
        "a retry after a restart counts nothing"
    );
    assert_digests_agree(&gw.url, &gw.url).await;
    assert!(gw.terminate().success());
}

/// The same scenario on a JetStream stream, with a one-market replica filtered on
/// its market's subject beside a replica of every market, and a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_on_jetstream_combined_and_split() {
    let nats = test_support::nats::Nats::single();
    let log = nats.log_url("ACCOUNTS");
    let dir = funded_workdir();
    let gw = Proc::start("gateway", dir.path(), &["--log", &log]);
    let end = trade_with_money(&gw.url, &gw.url, &gw.url).await;
    assert!(gw.terminate().success());
    let gw = Proc::start("gateway", dir.path(), &["--log", &log]);
    caught_up(&client(), &gw.url).await;
    assert_eq!(
        all_balances(&gw.url).await,
        end,
        "after a restart on the stream"
    );
    assert!(gw.terminate().success());

    // Split on the same stream: the replica of every market keeps the balances.
    let split = |name: &str| dir.path().join(name).display().to_string();
    let (s1, s2) = (split("snapshots-all"), split("snapshots-acme"));
    let command = Proc::start("command-svc", dir.path(), &["--log", &log]);
    let all = Proc::start(
        "query-svc",
        dir.path(),
        &["--log", &log, "--snapshots", &s1],
    );
    let acme = Proc::start(
        "query-svc",
        dir.path(),
        &["--log", &log, "--markets", "ACME", "--snapshots", &s2],
    );
    caught_up(&client(), &all.url).await;
    assert_eq!(
        all_balances(&all.url).await,
        end,
        "a fresh replica on the stream"
    );
    let (status, deposit) = post(&command.url, "/deposit/zed/USD/3", None).await;
    assert_eq!(status, 200, "{deposit}");
    let q = format!("?min_seq={}", deposit["seq"]);
    assert_eq!(balance(&all.url, "zed", "USD", &q).await.0, end[0].0 + 3);
    // The one-market replica moves past the transfer too (for min_seq reads).
    let book = get_json(
        &client(),
        &format!("{}/markets/ACME/orderbook{q}", acme.url),
    )
    .await;
    assert!(book["seq"].as_u64() >= deposit["seq"].as_u64(), "{book}");
    assert_digests_agree(&command.url, &all.url).await;
    for p in [acme, all, command] {
        assert!(p.terminate().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_balances_are_read_from_a_replica_holding_every_market() {
    let dir = funded_workdir();
    let command = Proc::start("command-svc", dir.path(), &[]);
    let query = Proc::start("query-svc", dir.path(), &[]);
    // A replica holding one market keeps no balances, and says so.
    let acme = Proc::start("query-svc", dir.path(), &["--markets", "ACME"]);
    let (status, body) = {
        let res = client()
            .get(format!("{}/users/alice/balances", acme.url))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("every market"),
        "{body}"
    );
    let proxy = Proc::start_proxy(dir.path(), &command, &[&acme, &query]);
    wait_until(
        &client(),
        &format!("{}/health", proxy.url),
        Duration::from_secs(10),
        |h| {
            h["query"]
                .as_array()
                .is_some_and(|q| q.iter().any(|r| r["accounts"] == true))
        },
    )
    .await;
    trade_with_money(&proxy.url, &command.url, &query.url).await;
    for p in [proxy, acme, query, command] {
        assert!(p.terminate().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_transfers_need_an_operator_and_balances_are_ones_own() {
    let dir = funded_workdir();
    std::fs::write(
        dir.path().join("auth.txt"),
        "alice-secret-token-0001 alice\nbank-secret-token-00001 bank operator\n",
    )
    .unwrap();
    let gw = Proc::start(
        "gateway",
        dir.path(),
        &["--auth-file", "auth.txt", "--auth-reads"],
    );
    let send = |method: &str, path: &str, token: &str| {
        client()
            .request(method.parse().unwrap(), format!("{}{path}", gw.url))
            .bearer_auth(token)
            .send()
    };
    let alice = "alice-secret-token-0001";
    let bank = "bank-secret-token-00001";
    let res = send("POST", "/deposit/alice/USD/5", alice).await.unwrap();
    assert_eq!(res.status(), 403, "a trader may not pay herself in");
    let res = send("POST", "/deposit/alice/USD/5", bank).await.unwrap();
    assert_eq!(res.status(), 200);
    let res = send("GET", "/users/alice/balances", alice).await.unwrap();
    assert_eq!(res.status(), 200, "her own");
    let res = send("GET", "/users/bob/balances", alice).await.unwrap();
    assert_eq!(res.status(), 403, "not another's");
    let res = send("GET", "/users/bob/balances", bank).await.unwrap();
    assert_eq!(res.status(), 200, "an operator reads all");
    let res = client()
        .get(format!("{}/users/alice/balances", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(gw.terminate().success());
}

/// Deposits acknowledged during a crash test: per depositing user, how many (of 1
/// USD each), and the keys with the seq each was answered with.
struct Deposits {
    count: Vec<u64>,
    attempted: Vec<u64>,
    keys: Vec<(String, String, u64)>,
    /// Orders answered 201 (their ids).
    orders: Vec<u64>,
}

impl Default for Deposits {
    fn default() -> Deposits {
        Deposits {
            count: vec![0; DEPOSITORS],
            attempted: vec![0; DEPOSITORS],
            keys: Vec::new(),
            orders: Vec::new(),
        }
    }
}

impl test_support::load::Acks for Deposits {
    fn count(&self) -> usize {
        self.keys.len()
    }
}

const DEPOSITORS: usize = 4;
const CRASH_CYCLES: usize = 8;

/// Kill -9 under load with accounts on: four clients deposit 1 USD at a time with a
/// key each, four trade as funded users (an order the money does not cover is 422).
/// After every restart every acknowledged order is there, each depositor holds at
/// least what was acknowledged and at most what was sent, a retried key changes
/// nothing and gets its first seq, every asset is conserved, and both sides' digests
/// agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_deposit_or_order() {
    use std::sync::atomic::Ordering;
    let dir = funded_workdir();
    let mut total = Deposits::default();
    for cycle in 0..=CRASH_CYCLES {
        let gw = Proc::start("gateway", dir.path(), &[]);
        caught_up(&client(), &gw.url).await;
        for d in 0..DEPOSITORS {
            let (available, held) = balance(&gw.url, &format!("dep{d}"), "USD", "").await;
            assert_eq!(held, 0);
            assert!(
                (total.count[d]..=total.attempted[d]).contains(&available),
                "cycle {cycle}: dep{d} holds {available} USD; {} deposits were acknowledged, {} sent",
                total.count[d],
                total.attempted[d]
            );
        }
        for id in &total.orders {
            let res = client()
                .get(format!("{}/orders/{id}", gw.url))
                .send()
                .await
                .unwrap();
            assert_eq!(
                res.status(),
                200,
                "cycle {cycle}: acknowledged order {id} is lost"
            );
        }
        for (user, key, seq) in total.keys.iter().rev().take(10) {
            let (status, again) = post(&gw.url, &format!("/deposit/{user}/USD/1"), Some(key)).await;
            assert_eq!(
                (status, again["seq"].as_u64()),
                (200, Some(*seq)),
                "cycle {cycle}: {key}"
            );
        }
        let assets = get_json(&client(), &format!("{}/assets", gw.url)).await;
        let usd = &assets["assets"]["USD"];
        let opening = 15 * 100_000u64;
        assert_eq!(
            usd["available"].as_u64().unwrap() + usd["held"].as_u64().unwrap(),
            opening + usd["deposited"].as_u64().unwrap() - usd["withdrawn"].as_u64().unwrap(),
            "cycle {cycle}: USD is conserved: {assets}"
        );
        assert_digests_agree(&gw.url, &gw.url).await;
        if cycle == CRASH_CYCLES {
            assert!(gw.terminate().success());
            break;
        }
        let base = gw.url.clone();
        let prefix = format!("c{cycle}");
        let load =
            test_support::load::Load::<Deposits>::start(2 * DEPOSITORS, move |c, acked, stop| {
                let (base, prefix) = (base.clone(), prefix.clone());
                async move {
                    let client = client();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        if c < DEPOSITORS {
                            let (user, key) = (format!("dep{c}"), format!("{prefix}-{c}-{i}"));
                            acked.lock().unwrap().attempted[c] += 1;
                            let Ok(res) = client
                                .post(format!("{base}/deposit/{user}/USD/1"))
                                .header("idempotency-key", &key)
                                .send()
                                .await
                            else {
                                return;
                            };
                            assert_eq!(res.status(), 200, "{key}");
                            let Ok(body) = res.json::<Value>().await else {
                                return;
                            };
                            let mut acked = acked.lock().unwrap();
                            acked.count[c] += 1;
                            acked.keys.push((user, key, body["seq"].as_u64().unwrap()));
                        } else {
                            let user = ["alice", "bob", "carol", "dave"][c - DEPOSITORS];
                            let side = if i.is_multiple_of(2) { "buy" } else { "sell" };
                            let url =
                                format!("{base}/{side}/{user}/{}", 95 + (i * 7 + c as u64) % 11);
                            let Ok(res) = client.post(&url).send().await else {
                                return;
                            };
                            let status = res.status().as_u16();
                            assert!([201, 422].contains(&status), "{url}: {status}");
                            if status == 201 {
                                let Ok(body) = res.json::<Value>().await else {
                                    return;
                                };
                                let id = body["order"]["id"].as_u64().unwrap();
                                acked.lock().unwrap().orders.push(id);
                            }
                        }
                    }
                }
            });
        // The kill lands while deposits and orders flow, later in each cycle.
        let acks = 20 + 15 * cycle;
        load.acks_reach(
            acks,
            Duration::from_secs(20),
            "deposits stopped being acknowledged",
        )
        .await;
        gw.kill9();
        let round = load.stop().await;
        for d in 0..DEPOSITORS {
            total.count[d] += round.count.get(d).copied().unwrap_or(0);
            total.attempted[d] += round.attempted.get(d).copied().unwrap_or(0);
        }
        total.keys.extend(round.keys);
        total.orders.extend(round.orders);
    }
    eprintln!(
        "{} deposits and {} orders acknowledged over {CRASH_CYCLES} kill -9 cycles, all present",
        total.keys.len(),
        total.orders.len()
    );
}
