//! Black-box tests of the combined gateway binary: concurrent clients, restarts (clean
//! and kill -9), the writer lock, and the errors a user sees.

use test_support::load::Load;
use test_support::*;

/// Places `per_client` orders from each of `clients` concurrent clients; returns the
/// acknowledged order ids.
async fn place_concurrently(base: &str, clients: usize, per_client: usize) -> Vec<u64> {
    let load = Load::<Vec<u64>>::start(clients, |c, ids, _stop| {
        let base = base.to_owned();
        async move {
            let client = client();
            for i in 0..per_client {
                let side = if (c + i) % 2 == 0 { "buy" } else { "sell" };
                let price = 97 + ((c * 7 + i * 3) % 7);
                let url = format!("{base}/{side}/user{c}/{price}?qty={}", 1 + i % 4);
                let res = client.post(&url).send().await.unwrap();
                assert_eq!(res.status(), 201, "{url}");
                let seq: u64 = res.headers()["x-event-seq"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let body: serde_json::Value = res.json().await.unwrap();
                assert_eq!(body["seq"], seq);
                assert_eq!(body["durable"], true);
                ids.lock()
                    .unwrap()
                    .push(body["order"]["id"].as_u64().unwrap());
            }
        }
    });
    load.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_survive_clean_and_hard_restarts() {
    let dir = workdir();
    let client = client();
    let gw = Proc::start("gateway", dir.path(), &[]);
    let ids = place_concurrently(&gw.url, 8, 25).await;
    assert_eq!(ids.len(), 200);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 200, "order ids are unique");

    let health = caught_up(&client, &gw.url).await;
    assert_eq!(health["durable_seq"], 200);
    let book_before = get_json(&client, &format!("{}/orderbook", gw.url)).await;
    let trades_before = get_json(&client, &format!("{}/trades?limit=1000", gw.url)).await;
    assert_eq!(gw.terminate().code(), Some(0), "SIGTERM is a clean stop");

    // Clean restart: the same state, rebuilt from init.txt + log.txt.
    let gw = Proc::start("gateway", dir.path(), &[]);
    caught_up(&client, &gw.url).await;
    assert_eq!(
        get_json(&client, &format!("{}/orderbook", gw.url)).await,
        book_before
    );
    assert_eq!(
        get_json(&client, &format!("{}/trades?limit=1000", gw.url)).await,
        trades_before
    );
    for id in &ids {
        let order = get_json(&client, &format!("{}/orders/{id}", gw.url)).await;
        assert_eq!(
            order["id"], *id,
            "acknowledged order {id} is known after restart"
        );
    }
    // A new order continues the sequence.
    let res = client
        .post(format!("{}/buy/zed/50", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-event-seq"], "201");
    caught_up(&client, &gw.url).await;
    let book_after = get_json(&client, &format!("{}/orderbook", gw.url)).await;
    gw.kill9();

    // Hard restart.
    let gw = Proc::start("gateway", dir.path(), &[]);
    caught_up(&client, &gw.url).await;
    assert_eq!(
        get_json(&client, &format!("{}/orderbook", gw.url)).await,
        book_after
    );
    assert!(
        gw.log().contains("write side replayed the log"),
        "{}",
        gw.log()
    );
}

#[tokio::test]
async fn a_second_gateway_on_the_same_log_exits_with_a_clear_message() {
    let dir = workdir();
    let _first = Proc::start("gateway", dir.path(), &[]);
    let out = run("gateway", dir.path(), &["--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("locked by another writer"), "{stderr}");
}

#[tokio::test]
async fn user_facing_errors_are_json() {
    let dir = workdir();
    let gw = Proc::start("gateway", dir.path(), &[]);
    let client = client();
    for (method, path, status) in [
        ("POST", "/buy/alice/0", 400),
        ("POST", "/sell/alice/10?qty=0", 400),
        ("POST", "/cancel/bob/1", 403),
        ("POST", "/cancel/bob/999", 404),
        ("GET", "/orders/999", 404),
        ("GET", "/nowhere", 404),
        ("PUT", "/orderbook", 405),
        ("GET", "/cancel/alice/1", 405),
    ] {
        let res = client
            .request(method.parse().unwrap(), format!("{}{path}", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status, "{method} {path}");
        assert_eq!(
            res.headers()["content-type"],
            "application/json",
            "{method} {path}"
        );
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {body}"
        );
    }
    let index = get_text(&client, &gw.url).await;
    assert!(
        index.contains("/orderbook"),
        "GET / says where to go: {index}"
    );
    let health = get_json(&client, &format!("{}/health", gw.url)).await;
    assert_eq!(
        health["seq"], 0,
        "rejected requests wrote nothing: {health}"
    );
}
