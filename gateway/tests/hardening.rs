//! Hostile clients against the real gateway: slow and greedy connections, oversized
//! requests, and who may trade for whom with `--auth-file`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use test_support::*;

/// Reads until the server closes the connection (or `limit` passes); returns what it sent.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Result<String, String> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok(String::from_utf8_lossy(&got).into_owned());
            }
            Err(e) => return Err(format!("not closed within {limit:?}: {e}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_others_still_served() {
    let dir = workdir();
    let gw = Proc::start("gateway", dir.path(), &["--header-timeout-ms", "500"]);
    let target = gw.addr();
    // 100 slowloris connections: each sends half a request head, then a byte now and then.
    let slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(target).unwrap();
            s.write_all(b"GET /orderbook HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    let trickle = std::thread::spawn(move || {
        let mut slow = slow;
        for _ in 0..5 {
            for s in &mut slow {
                let _ = s.write_all(b"a");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        slow
    });
    // A normal client is served meanwhile (the bound is a hang guard, not a benchmark).
    let started = Instant::now();
    let client = client();
    let orderbook = format!("{}/orderbook", gw.url);
    for _ in 0..20 {
        assert_eq!(status_of(&client, "GET", &orderbook).await, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "normal requests took {:?}",
        started.elapsed()
    );
    // Every slow connection is closed once its head is overdue.
    let mut slow = trickle.join().unwrap();
    for s in &mut slow {
        let answer = read_until_closed(s, Duration::from_secs(10))
            .expect("a slow connection was not closed");
        assert!(
            !answer.contains("200 OK"),
            "a slow request was served: {answer}"
        );
    }
    // An idle keep-alive connection is closed too.
    let mut idle = TcpStream::connect(target).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answer = read_until_closed(&mut idle, Duration::from_secs(10))
        .expect("an idle connection was not closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// The header-read timeout applies to connections waiting for a request head, not
/// to one carrying a streamed answer: an event stream outlives it and still
/// delivers, and a request that waits (`min_seq`) longer than it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_and_a_long_wait_outlive_the_header_timeout() {
    use futures_util::StreamExt as _;
    let dir = workdir();
    let gw = Proc::start("gateway", dir.path(), &["--header-timeout-ms", "300"]);
    let c = client();
    let mut stream = c
        .get(format!("{}/events", gw.url))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    // A read that waits 1 s for a seq that comes after the timeout passed.
    let waiting = tokio::spawn({
        let (c, url) = (c.clone(), gw.url.clone());
        async move {
            c.get(format!("{url}/orderbook?min_seq=1&timeout_ms=5000"))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    // Three times the timeout pass with nothing on the stream (the scenario, not
    // a wait for a condition).
    tokio::time::sleep(Duration::from_millis(900)).await;
    let placed = c
        .post(format!("{}/buy/alice/100", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while !seen.contains("OrderPlaced") {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no OrderPlaced on the stream within 10 s: {seen:?}"))
            .expect("the event stream ended")
            .expect("the event stream failed");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(waiting.await.unwrap(), 200);
}

/// Sends raw bytes and returns the status line of the answer.
fn raw_status(target: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(target).unwrap();
    s.write_all(request).unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(10)).unwrap_or_default();
    answer.lines().next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn oversized_requests_get_4xx() {
    let dir = workdir();
    let gw = Proc::start("gateway", dir.path(), &["--header-timeout-ms", "2000"]);
    let target = gw.addr();
    let long_uri = format!(
        "GET /orderbook?{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(5000)
    );
    assert!(raw_status(target, long_uri.as_bytes()).contains("414"));
    let big_header = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    assert!(raw_status(target, big_header.as_bytes()).contains("431"));
    // More headers than hyper parses, and more than --headers-max (64) but fewer
    // than that (checked by the server itself).
    for n in [100, 70] {
        let many: String = (0..n).map(|i| format!("X-H{i}: v\r\n")).collect();
        let many_headers = format!("GET /health HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        let status = raw_status(target, many_headers.as_bytes());
        assert!(status.contains("431"), "{n} headers: {status:?}");
    }
    let body = b"POST /buy/alice/100 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100000\r\n\r\n";
    assert!(raw_status(target, body).contains("413"));
    // None of those wrote anything.
    let health = get_json(&client(), &format!("{}/health", gw.url)).await;
    assert_eq!(health["head_seq"], 0);
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed() {
    let dir = workdir();
    let gw = Proc::start("gateway", dir.path(), &["--connections-max", "4"]);
    let target = gw.addr();
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(target).unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(s);
    }
    let mut fifth = TcpStream::connect(target).unwrap();
    let _ = fifth.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = read_until_closed(&mut fifth, Duration::from_secs(10))
        .expect("the fifth connection stayed open");
    assert!(
        answer.is_empty(),
        "the fifth connection was served: {answer}"
    );
    drop(held);
    // Slots free up again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(res) = client().get(format!("{}/health", gw.url)).send().await {
            assert_eq!(res.status(), 200);
            break;
        }
        assert!(Instant::now() < deadline, "no slot came free");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
// One scenario, read top to bottom: its steps build on each other's state,
// so it stays one function.
async fn auth_file_guards_writes_and_optionally_reads() {
    let dir = workdir();
    let hashed = shared_events::auth::hash_token("bob-token-bob-token-2");
    std::fs::write(
        dir.path().join("tokens.txt"),
        format!("alice-token-alice-1 alice\n{hashed} bob\n"),
    )
    .unwrap();
    let gw = Proc::start("gateway", dir.path(), &["--auth-file", "tokens.txt"]);
    let client = client();
    let post = |path: &str, token: Option<&str>| {
        let mut req = client.post(format!("{}{path}", gw.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let res = post("/buy/alice/90", None).await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        post("/buy/alice/90", Some("wrong-wrong-wrong-wrong"))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        post("/buy/alice/90", Some("bob-token-bob-token-2"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post("/buy/alice/90", Some("alice-token-alice-1"))
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        post("/buy/bob/90", Some("bob-token-bob-token-2"))
            .await
            .unwrap()
            .status(),
        201,
        "hashed entries work"
    );
    assert_eq!(
        post("/cancel/bob/1", Some("bob-token-bob-token-2"))
            .await
            .unwrap()
            .status(),
        403,
        "order 1 is alice's"
    );
    // Reads stay public without --auth-reads.
    let orderbook = format!("{}/orderbook", gw.url);
    assert_eq!(status_of(&client, "GET", &orderbook).await, 200);
    // Tokens never reach the log.
    assert!(!gw.log().contains("alice-token-alice-1"));
    drop(gw);

    let gw = Proc::start(
        "gateway",
        dir.path(),
        &["--auth-file", "tokens.txt", "--auth-reads"],
    );
    let orderbook = format!("{}/orderbook", gw.url);
    assert_eq!(status_of(&client, "GET", &orderbook).await, 401);
    let res = client
        .get(&orderbook)
        .bearer_auth("bob-token-bob-token-2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "any known token may read");
    let health = format!("{}/health", gw.url);
    assert_eq!(
        status_of(&client, "GET", &health).await,
        200,
        "health stays open"
    );
}
