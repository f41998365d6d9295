//! Order types through the real binaries, on the shipped `init.txt` (asks at 101:
//! erin 7 (id 5) and heidi 2 (id 8), 102: frank 12 (id 6), 103: grace 4 (id 7);
//! bids at 99: alice 10 (id 1) and dave 3 (id 4), 98 bob, 97 carol): IOC, FOK,
//! post-only, market orders, self-trade prevention, amend and cancel-all, each
//! answered as documented, shown by the read side (the book, the orders' statuses),
//! the same after a restart, both sides' digests agreeing. Combined, split behind a
//! proxying gateway, and on JetStream.

use serde_json::Value;
use std::time::Duration;
use test_support::*;

fn shipped_workdir() -> tempfile::TempDir {
    let dir = workdir();
    std::fs::write(dir.path().join("init.txt"), include_str!("../../init.txt")).unwrap();
    dir
}

async fn post(base: &str, path: &str) -> (u16, Value) {
    let res = client().post(format!("{base}{path}")).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// The read side's view of order `id` once it shows `seq`.
async fn order_at(base: &str, id: u64, seq: &Value) -> Value {
    get_json(&client(), &format!("{base}/orders/{id}?min_seq={seq}")).await
}

/// The scenario against `base` (a gateway or proxy); `write` is where the write
/// side's health is. Returns the book it ends with.
async fn every_order_type(base: &str, write: &str) -> Value {
    // IOC: 7 + 2 at 101, the rest (1) cancelled, nothing rests.
    let (status, ioc) = post(base, "/buy/zed/101?qty=10&tif=ioc").await;
    assert_eq!(status, 201, "{ioc}");
    assert_eq!(
        (&ioc["unfilled_qty"], &ioc["resting_qty"], &ioc["tif"]),
        (&Value::from(1), &Value::from(0), &Value::from("ioc")),
        "{ioc}"
    );
    let id = ioc["order"]["id"].as_u64().unwrap();
    let view = order_at(base, id, &ioc["seq"]).await;
    assert_eq!(
        (&view["status"], &view["filled_qty"]),
        (&Value::from("cancelled"), &Value::from(9)),
        "{view}"
    );

    // Refusals that would change nothing: 409, nothing written.
    let head = get_json(&client(), &format!("{write}/health")).await["durable_seq"].clone();
    for (path, says) in [
        ("/buy/zed/101?qty=1&tif=ioc", "immediate-or-cancel"),
        ("/buy/zed/102?qty=13&tif=fok", "could fill only 12"),
        ("/buy/zed/102?post_only=true", "post-only"),
        (
            "/sell/zed/100?post_only=true&tif=ioc",
            "immediate-or-cancel",
        ),
    ] {
        let (status, body) = post(base, path).await;
        assert_eq!(status, 409, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{path}: {body}"
        );
    }
    let (status, body) = post(base, "/buy/zed/102?tif=day").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(base, "/sell/zed/market?max_cost=5").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        get_json(&client(), &format!("{write}/health")).await["durable_seq"],
        head,
        "nothing written"
    );

    // FOK exactly fillable: 12 at 102.
    let (status, fok) = post(base, "/buy/zed/102?qty=12&tif=fok").await;
    assert_eq!(
        (status, &fok["fills"][0]["qty"]),
        (201, &Value::from(12)),
        "{fok}"
    );
    // A market buy takes grace's 4 at 103 and cancels the rest; a market sell
    // takes the best bids.
    let (status, market) = post(base, "/buy/yan/market?qty=6").await;
    assert_eq!(status, 201, "{market}");
    assert_eq!(
        (&market["market_order"], &market["unfilled_qty"]),
        (&Value::from(true), &Value::from(2)),
        "{market}"
    );
    let (status, nothing) = post(base, "/buy/yan/market").await;
    assert_eq!(status, 409, "no asks left: {nothing}");
    let (status, sold) = post(base, "/sell/yan/market?qty=11").await;
    assert_eq!(status, 201, "{sold}");
    assert_eq!(
        sold["fills"].as_array().unwrap().len(),
        2,
        "alice's 10 and dave's 1 at 99: {sold}"
    );

    // Self-trade prevention: dave's own bid at 99 (2 left) is cancelled, bob's 98 fills.
    let (status, stp) = post(base, "/sell/dave/98?qty=3&stp=cancel_maker").await;
    assert_eq!(status, 201, "{stp}");
    assert_eq!(stp["cancelled_makers"][0]["order_id"], 4, "{stp}");
    assert_eq!(order_at(base, 4, &stp["seq"]).await["status"], "cancelled");

    // Amend: carol's bid (id 3, 20 at 97) shrinks and keeps its id, then moves.
    let (status, kept) = post(base, "/amend/carol/3?qty=5").await;
    assert_eq!(status, 200, "{kept}");
    assert!(kept["new_order_id"].is_null(), "{kept}");
    assert_eq!(order_at(base, 3, &kept["seq"]).await["qty"], 5);
    let (status, same) = post(base, "/amend/carol/3?qty=5&price=97").await;
    assert_eq!(status, 409, "{same}");
    let (status, moved) = post(base, "/amend/carol/3?qty=6&price=96").await;
    assert_eq!(status, 200, "{moved}");
    let new_id = moved["new_order_id"].as_u64().expect("a new id");
    assert_eq!(order_at(base, 3, &moved["seq"]).await["status"], "replaced");
    assert_eq!(order_at(base, new_id, &moved["seq"]).await["price"], 96);
    let (status, body) = post(base, "/amend/bob/3?qty=1").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = post(base, &format!("/amend/bob/{new_id}?qty=1")).await;
    assert_eq!(status, 403, "{body}");

    // Cancel-all: zed rests one order in two markets; in one market, then all.
    post(base, "/sell/zed/200").await;
    let (_, acme) = post(base, "/markets/ACME/sell/zed/300").await;
    let (status, one) = post(base, "/cancel-all/zed?market=ACME").await;
    assert_eq!(
        (status, one["cancelled"].as_array().unwrap().len()),
        (200, 1),
        "{one}"
    );
    assert_eq!(
        order_at(base, acme["order"]["id"].as_u64().unwrap(), &one["seq"]).await["status"],
        "cancelled"
    );
    let (status, all) = post(base, "/cancel-all/zed").await;
    assert_eq!(
        (status, all["cancelled"].as_array().unwrap().len()),
        (200, 1),
        "{all}"
    );
    let (status, none) = post(base, "/cancel-all/zed").await;
    assert_eq!(status, 409, "{none}");
    let (status, body) = post(base, "/cancel-all/zed?market=NOPE").await;
    assert_eq!(status, 404, "{body}");

    get_json(
        &client(),
        &format!("{base}/orderbook?min_seq={}", all["seq"]),
    )
    .await
}

async fn assert_digests_agree(write: &str, read: &str) {
    let w = get_json(&client(), &format!("{write}/health")).await;
    let r = applied(
        &client(),
        read,
        w["durable_seq"].clone(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(w["write_digest"], r["read_digest"], "{w}\n{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_type_combined_and_after_a_restart() {
    let dir = shipped_workdir();
    let gw = Proc::start("gateway", dir.path(), &[]);
    let book = every_order_type(&gw.url, &gw.url).await;
    assert_digests_agree(&gw.url, &gw.url).await;
    assert!(gw.terminate().success());
    let gw = Proc::start("gateway", dir.path(), &[]);
    caught_up(&client(), &gw.url).await;
    let mut again = get_json(&client(), &format!("{}/orderbook", gw.url)).await;
    again["seq"] = book["seq"].clone();
    assert_eq!(again, book, "the book after a restart");
    gw.kill9();
    let gw = Proc::start("gateway", dir.path(), &[]);
    caught_up(&client(), &gw.url).await;
    let out = run("command-svc", dir.path(), &["verify"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("OrderAmended") && report.contains("OrdersCancelled"),
        "{report}"
    );
    assert_digests_agree(&gw.url, &gw.url).await;
    assert!(gw.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_type_split() {
    let dir = shipped_workdir();
    let command = Proc::start("command-svc", dir.path(), &[]);
    let query = Proc::start("query-svc", dir.path(), &[]);
    let proxy = Proc::start_proxy(dir.path(), &command, &[&query]);
    every_order_type(&proxy.url, &command.url).await;
    assert_digests_agree(&command.url, &query.url).await;
    for p in [proxy, query, command] {
        assert!(p.terminate().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_type_on_jetstream() {
    let nats = test_support::nats::Nats::single();
    let log = nats.log_url("ORDERTYPES");
    let dir = shipped_workdir();
    let gw = Proc::start("gateway", dir.path(), &["--log", &log]);
    let book = every_order_type(&gw.url, &gw.url).await;
    assert_digests_agree(&gw.url, &gw.url).await;
    assert!(gw.terminate().success());
    let gw = Proc::start("gateway", dir.path(), &["--log", &log]);
    caught_up(&client(), &gw.url).await;
    let mut again = get_json(&client(), &format!("{}/orderbook", gw.url)).await;
    again["seq"] = book["seq"].clone();
    assert_eq!(again, book, "the book after a restart on the stream");
    assert!(gw.terminate().success());
}
