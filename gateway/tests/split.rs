//! Black-box tests of the split setup: command-svc, query-svc replicas and a gateway
//! in proxy mode, each a real process on a free port.

use std::time::{Duration, Instant};
use test_support::*;

/// Longest a failing upstream may make a client wait (connect timeout and the
/// upstream timeout used below, with room to spare).
const ERROR_ANSWER_TIME_MAX: Duration = Duration::from_secs(5);

async fn post(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let res = client.post(url).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// Waits (bounded) until the book at `base` is at `seq`; returns it.
async fn book_at(client: &reqwest::Client, base: &str, seq: u64) -> serde_json::Value {
    wait_until(
        client,
        &format!("{base}/orderbook"),
        Duration::from_secs(10),
        |b| b["seq"] == seq,
    )
    .await
}

/// Status and JSON body of a request, checking the answer came within the bound.
async fn timed(client: &reqwest::Client, method: &str, url: &str) -> (u16, serde_json::Value) {
    let started = Instant::now();
    let res = client
        .request(method.parse().unwrap(), url)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    assert_eq!(
        res.headers()["content-type"],
        "application/json",
        "{method} {url}"
    );
    let body = res.json().await.unwrap();
    assert!(
        started.elapsed() < ERROR_ANSWER_TIME_MAX,
        "{method} {url} took {:?}",
        started.elapsed()
    );
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// One scenario, read top to bottom: its steps build on each other's state,
// so it stays one function.
async fn split_processes_serve_catch_up_and_fail_clearly() {
    let dir = workdir();
    let client = client();
    let command = Proc::start("command-svc", dir.path(), &[]);
    let query1 = Proc::start("query-svc", dir.path(), &[]);
    let query2 = Proc::start("query-svc", dir.path(), &["--snapshots", "snapshots-2"]);
    let gw = Proc::start_proxy(dir.path(), &command, &[&query1, &query2]);

    // Each service serves only its own side, plus /health and /metrics.
    let orderbook = format!("{}/orderbook", command.url);
    assert_eq!(status_of(&client, "GET", &orderbook).await, 404);
    let buy = format!("{}/buy/a/1", query1.url);
    assert_eq!(status_of(&client, "POST", &buy).await, 404);
    for url in [&command.url, &query1.url, &gw.url] {
        let health = format!("{url}/health");
        assert_eq!(status_of(&client, "GET", &health).await, 200, "{url}");
        let metrics = get_text(&client, &format!("{url}/metrics")).await;
        assert!(
            metrics.contains("foldbook_http_requests_total"),
            "{url}: {metrics}"
        );
    }

    // Orders through the gateway; reads through it see them once applied.
    let mut last_seq = 0;
    for i in 0..40 {
        let side = if i % 2 == 0 { "buy" } else { "sell" };
        let (status, body) = post(
            &client,
            &format!("{}/{side}/u{}/{}", gw.url, i % 4, 95 + i % 11),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        last_seq = body["seq"].as_u64().unwrap();
    }
    let book = book_at(&client, &gw.url, last_seq).await;
    for q in [&query1, &query2] {
        let direct = book_at(&client, &q.url, last_seq).await;
        assert_eq!(direct, book, "both replicas agree");
    }
    let metrics = get_text(&client, &format!("{}/metrics", command.url)).await;
    assert!(
        metrics.contains("foldbook_events_appended_total 40"),
        "{metrics}"
    );
    assert!(
        metrics.contains("foldbook_fsync_seconds_bucket"),
        "{metrics}"
    );
    let metrics = get_text(&client, &format!("{}/metrics", query1.url)).await;
    assert!(metrics.contains("foldbook_applied_seq 40"), "{metrics}");
    assert!(metrics.contains("foldbook_lag_seconds_bucket"), "{metrics}");

    // One replica down: reads still answer from the other, without errors.
    query1.kill9();
    let orderbook = format!("{}/orderbook", gw.url);
    for _ in 0..6 {
        assert_eq!(status_of(&client, "GET", &orderbook).await, 200);
    }
    let health = wait_until(
        &client,
        &format!("{}/health", gw.url),
        Duration::from_secs(10),
        |h| {
            h["query"]
                .as_array()
                .is_some_and(|q| q.iter().any(|r| r["healthy"] == false))
        },
    )
    .await;
    assert_eq!(
        health["status"], "ok",
        "one healthy replica is enough: {health}"
    );

    // More writes while it is down; restarted, it catches up.
    for i in 0..10 {
        let (status, body) = post(&client, &format!("{}/buy/late/{}", gw.url, 80 + i)).await;
        assert_eq!(status, 201);
        last_seq = body["seq"].as_u64().unwrap();
    }
    let query1 = Proc::start("query-svc", dir.path(), &[]);
    let caught = applied(&client, &query1.url, last_seq, Duration::from_secs(10)).await;
    assert_eq!(caught["behind"], 0);
    let split_book = get_json(&client, &format!("{}/orderbook", query1.url)).await;

    // The lag summary line is in the read side's log.
    wait_for_log(&query2, "read side caught up to seq").await;
    assert!(query2.log().contains("lag_ms_p99"), "{}", query2.log());

    // Both replicas down: reads are 503 JSON, promptly.
    query1.kill9();
    query2.kill9();
    let (status, body) = timed(&client, "GET", &format!("{}/orderbook", gw.url)).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no query-svc replica"),
        "{body}"
    );
    // The writer down: writes are 502 JSON, promptly.
    command.kill9();
    let (status, body) = timed(&client, "POST", &format!("{}/buy/a/1", gw.url)).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );
    let (status, health) = timed(&client, "GET", &format!("{}/health", gw.url)).await;
    assert_eq!((status, health["status"].as_str()), (503, Some("degraded")));
    drop(gw);

    // Combined mode rebuilds the same book from the same log.
    let combined = Proc::start("gateway", dir.path(), &[]);
    let rebuilt = book_at(&client, &combined.url, last_seq).await;
    assert_eq!(rebuilt, split_book);
}

#[tokio::test]
async fn a_slow_upstream_is_a_504_not_a_hang() {
    // An "upstream" that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let dir = workdir();
    let gw = Proc::start(
        "gateway",
        dir.path(),
        &[
            "--command-url",
            &silent_url,
            "--query-url",
            &silent_url,
            "--upstream-timeout-ms",
            "300",
        ],
    );
    let client = client();
    let (status, body) = timed(&client, "POST", &format!("{}/buy/a/1", gw.url)).await;
    assert_eq!(status, 504, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("Idempotency-Key"),
        "a write's outcome is unknown: {body}"
    );
    let (status, _) = timed(&client, "GET", &format!("{}/orderbook", gw.url)).await;
    assert_eq!(status, 504);
    let (status, _) = timed(&client, "GET", &format!("{}/nowhere", gw.url)).await;
    assert_eq!(status, 404);
    drop(silent);
}

/// Waits (bounded) until `needle` appears in a process's log.
async fn wait_for_log(proc: &Proc, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proc.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{needle:?} not logged within 10 s:\n{}",
            proc.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
