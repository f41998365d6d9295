//! Accounts through the real binaries, on the shipped `init-accounts.txt`: nothing
//! bought without the money (422 with the amounts, nothing written), deposits and
//! withdrawals (idempotent, also after a restart), holds and settlement visible in
//! `/users/{user}/balances`, totals in `/assets`, time travel of balances, both
//! sides' digests agreeing, and balances identical after a clean stop and after
//! SIGKILL. Combined and split (command-svc, query-svc, a proxying gateway), and
//! with `--auth-file` (transfers need an operator token; balances are one's own).

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
