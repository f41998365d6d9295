//! The event-sourcing features through the real gateway, in combined and in proxy
//! mode: idempotency keys, read-your-writes, time travel, the event stream, and the
//! state digests of the two sides agreeing.

use futures_util::StreamExt;
use std::time::Duration;
use test_support::*;

// One scenario, read top to bottom: its steps build on each other's state,
// so it stays one function.
async fn exercise(base: &str) {
    let client = client();
    // Idempotency: a retry gets the first answer; another request with the key is 409.
    let send = |path: &str, key: &str| {
        client
            .post(format!("{base}{path}"))
            .header("idempotency-key", key)
            .send()
    };
    let first = send("/buy/ann/50?qty=2", "k-1").await.unwrap();
    assert_eq!(first.status(), 201);
    let seq: u64 = first.headers()["x-event-seq"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let first: serde_json::Value = first.json().await.unwrap();
    let retry = send("/buy/ann/50?qty=2", "k-1").await.unwrap();
    assert_eq!(
        retry.headers()["x-event-seq"].to_str().unwrap(),
        seq.to_string()
    );
    assert_eq!(retry.json::<serde_json::Value>().await.unwrap(), first);
    assert_eq!(
        send("/buy/ann/51?qty=2", "k-1").await.unwrap().status(),
        409
    );
    let id = first["order"]["id"].as_u64().unwrap();

    // Read-your-writes with the write's seq.
    let res = client
        .get(format!("{base}/orders/{id}?min_seq={seq}&timeout_ms=5000"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["x-applied-seq"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= seq
    );
    let res = client
        .get(format!(
            "{base}/orderbook?min_seq={}&timeout_ms=100",
            seq + 1000
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 504);
    assert!(res.json::<serde_json::Value>().await.unwrap()["error"].is_string());

    // Time travel: genesis, and right after the write.
    let at0 = get_json(&client, &format!("{base}/orderbook?at=0")).await;
    assert_eq!(at0["seq"], 0);
    assert!(!at0.to_string().contains("\"ann\""));
    let at_seq = get_json(&client, &format!("{base}/orderbook?at={seq}")).await;
    assert!(
        at_seq["bids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["id"] == id),
        "{at_seq}"
    );
    let res = client
        .get(format!("{base}/orderbook?at={}", seq + 1000))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // The event stream from seq 1.
    let res = client
        .get(format!("{base}/events?from=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.bytes_stream();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("an event")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let frame = &text[..text.find("\n\n").unwrap()];
    let mut fields: Vec<&str> = frame.lines().collect();
    fields.sort();
    assert_eq!(fields.len(), 3, "{frame}");
    assert!(fields[0].starts_with("data:{\"seq\":1,"), "{frame}");
    assert_eq!(&fields[1..], ["event:OrderPlaced", "id:1"], "{frame}");
}

/// The write side's digest equals the read side's once the read side caught up.
fn assert_digests_agree(write: &serde_json::Value, read: &serde_json::Value) {
    assert_eq!(
        write["write_digest_seq"], read["applied_seq"],
        "{write} {read}"
    );
    assert_eq!(write["write_digest"], read["read_digest"], "{write} {read}");
    assert!(
        write["write_digest"]
            .as_str()
            .is_some_and(|d| d.len() == 16)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_work_through_the_combined_gateway() {
    let dir = workdir();
    let gw = Proc::start("gateway", dir.path(), &[]);
    exercise(&gw.url).await;
    let health = caught_up(&client(), &gw.url).await;
    assert_digests_agree(&health, &health);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_work_through_the_proxy_gateway_and_digests_match_combined() {
    let dir = workdir();
    let command = Proc::start("command-svc", dir.path(), &[]);
    let query = Proc::start("query-svc", dir.path(), &[]);
    let gw = Proc::start_proxy(dir.path(), &command, &[&query]);
    exercise(&gw.url).await;
    let client = client();
    let write = get_json(&client, &format!("{}/health", command.url)).await;
    let durable = write["durable_seq"].clone();
    let read = applied(&client, &query.url, durable, Duration::from_secs(10)).await;
    assert_digests_agree(&write, &read);
    let split_book = get_json(&client, &format!("{}/orderbook", query.url)).await;
    drop((gw, query));
    assert_eq!(command.terminate().code(), Some(0));

    // Combined mode over the same files reaches the same state and digest.
    let combined = Proc::start("gateway", dir.path(), &[]);
    let health = caught_up(&client, &combined.url).await;
    assert_eq!(
        health["read_digest"],
        read["read_digest"],
        "combined {health}\nsplit {read}\n{}",
        combined.log()
    );
    assert_eq!(
        get_json(&client, &format!("{}/orderbook", combined.url)).await,
        split_book
    );
}
