//! The read side in process: the tailer following a log that grows under it, and the
//! read routes without a socket.

mod common;
use common::wait_read_error;
use query_svc::{Config, QueryService};
use shared_events::{Envelope, Event, Fill, Order, SCHEMA_VERSION, Side, Watermark};
use std::io::Write;
use std::time::Duration;
use warp::http::StatusCode;

const INIT: &str = r#"{"next_order_id": 3, "orders": [
  {"id": 1, "user": "alice", "side": "buy", "price": 99, "qty": 10},
  {"id": 2, "user": "bob", "side": "sell", "price": 101, "qty": 5}
]}"#;

/// Bounded wait for the read side to reach `seq`.
async fn wait_applied(service: &QueryService, seq: u64) {
    let mut rx = service.state.subscribe();
    let reached = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|&s| s >= seq)).await;
    assert!(
        reached.is_ok(),
        "read side did not reach seq {seq} in 10 s (at {}, error {:?})",
        service.state.applied_seq(),
        service.state.error()
    );
}

fn env(seq: u64, event: Event) -> Envelope {
    Envelope {
        seq,
        ts_us: 1_000_000 * seq,
        v: SCHEMA_VERSION,
        event,
    }
}

fn events() -> Vec<Envelope> {
    vec![
        env(
            1,
            Event::limit_placed(
                shared_events::DEFAULT_MARKET,
                Order {
                    id: 3,
                    user: "carol".into(),
                    side: Side::Buy,
                    price: 101,
                    qty: 7,
                },
                vec![Fill {
                    maker_id: 2,
                    maker_user: "bob".into(),
                    price: 101,
                    qty: 5,
                }],
                2,
                None,
            ),
        ),
        env(
            2,
            Event::OrderCancelled {
                balances: vec![],
                market: shared_events::DEFAULT_MARKET,
                order_id: 1,
                user: "alice".into(),
                cancelled_qty: 10,
                idempotency_key: None,
            },
        ),
        env(
            3,
            Event::limit_placed(
                shared_events::DEFAULT_MARKET,
                Order {
                    id: 4,
                    user: "dave".into(),
                    side: Side::Sell,
                    price: 100,
                    qty: 1,
                },
                vec![Fill {
                    maker_id: 3,
                    maker_user: "carol".into(),
                    price: 101,
                    qty: 1,
                }],
                0,
                None,
            ),
        ),
    ]
}

fn setup() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("init.txt"), INIT).unwrap();
    let config = Config::new(dir.path().join("init.txt"), dir.path().join("log.txt"));
    (dir, config)
}

fn append(config: &Config, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.log.file().unwrap())
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// What the writer does after its fdatasync: says how far the log is durable.
fn mark_durable(config: &Config, seq: u64) {
    let offset = std::fs::metadata(config.log.file().unwrap()).map_or(0, |m| m.len());
    let path = shared_events::watermark::path_for(config.log.file().unwrap());
    std::fs::write(path, Watermark::now(seq, offset).encode()).unwrap();
}

async fn get(service: &QueryService, path: &str) -> (StatusCode, serde_json::Value, u64) {
    let routes = query_svc::http::routes(service.state.clone(), None);
    let res = warp::test::request()
        .method("GET")
        .path(path)
        .reply(&routes)
        .await;
    let applied = res
        .headers()
        .get("x-applied-seq")
        .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
    assert_eq!(res.headers()["content-type"], "application/json");
    (
        res.status(),
        serde_json::from_slice(res.body()).unwrap(),
        applied,
    )
}

#[tokio::test]
// One scenario, read top to bottom: its steps build on each other's state,
// so it stays one function.
async fn follows_a_log_that_appears_and_grows() {
    let (_dir, config) = setup();
    let service = query_svc::start(&config).unwrap();
    let (status, book, applied) = get(&service, "/orderbook").await;
    assert_eq!(
        (status, applied, book["seq"].as_u64()),
        (StatusCode::OK, 0, Some(0))
    );
    assert_eq!(book["bids"][0]["id"], 1);

    let lines: Vec<Vec<u8>> = events().iter().map(shared_events::encode).collect();
    append(&config, &lines[0]);
    mark_durable(&config, 1);
    wait_applied(&service, 1).await;
    // Complete lines past the durable watermark are not shown: a crash could still
    // take them back. Only what the watermark covers is applied.
    append(&config, &lines[1]);
    let durable_2 = std::fs::metadata(config.log.file().unwrap()).unwrap().len();
    append(&config, &lines[2]);
    let path = shared_events::watermark::path_for(config.log.file().unwrap());
    std::fs::write(&path, Watermark::now(2, durable_2).encode()).unwrap();
    wait_applied(&service, 2).await;
    let (_, book, applied) = get(&service, "/orderbook").await;
    assert_eq!(
        (book["seq"].as_u64(), applied),
        (Some(2), 2),
        "seq 3 is written but not durable"
    );
    assert_eq!(get(&service, "/orders/4").await.0, StatusCode::NOT_FOUND);
    mark_durable(&config, 3);
    wait_applied(&service, 3).await;

    let (_, book, applied) = get(&service, "/orderbook").await;
    assert_eq!(applied, 3);
    assert_eq!(
        book,
        serde_json::json!({"seq": 3, "market": "FOLD", "bids": [{"id": 3, "user": "carol", "price": 101, "qty": 1}], "asks": []})
    );

    let (status, order, _) = get(&service, "/orders/3").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        order,
        serde_json::json!({"id": 3, "market": "FOLD", "user": "carol", "side": "buy", "price": 101, "qty": 7, "filled_qty": 6, "status": "resting", "seq": 3})
    );
    assert_eq!(get(&service, "/orders/2").await.1["status"], "filled");
    assert_eq!(get(&service, "/orders/1").await.1["status"], "cancelled");
    assert_eq!(get(&service, "/orders/99").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&service, "/orders/x").await.0, StatusCode::BAD_REQUEST);

    let (_, trades, _) = get(&service, "/trades").await;
    assert_eq!(
        trades["trades"],
        serde_json::json!([
            {"seq": 3, "market": "FOLD", "taker_id": 4, "maker_id": 3, "buyer": "carol", "seller": "dave", "price": 101, "qty": 1},
            {"seq": 1, "market": "FOLD", "taker_id": 3, "maker_id": 2, "buyer": "carol", "seller": "bob", "price": 101, "qty": 5},
        ])
    );
    assert_eq!(
        get(&service, "/trades?limit=1").await.1["trades"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    for bad in [
        "/trades?limit=0",
        "/trades?limit=1001",
        "/trades?limit=x",
        "/trades?lmit=1",
        "/orderbook?x=1",
    ] {
        assert_eq!(get(&service, bad).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }

    let (_, mine, _) = get(&service, "/users/carol/orders").await;
    assert_eq!(mine["orders"].as_array().unwrap().len(), 1);
    let (_, none, _) = get(&service, "/users/nobody/orders").await;
    assert_eq!(none["orders"], serde_json::json!([]));
    assert_eq!(
        get(&service, "/users/no%20body/orders").await.0,
        StatusCode::BAD_REQUEST
    );

    let (status, health, _) = get(&service, "/health").await;
    assert_eq!(
        (status, health["status"].as_str(), health["seq"].as_u64()),
        (StatusCode::OK, Some("ok"), Some(3))
    );
    service.stop();
}

#[tokio::test]
async fn user_orders_are_newest_first_and_limited() {
    let (_dir, config) = setup();
    let mut log = Vec::new();
    for i in 0..5u64 {
        shared_events::encode_into(
            &mut log,
            &env(
                i + 1,
                Event::limit_placed(
                    shared_events::DEFAULT_MARKET,
                    Order {
                        id: 3 + i,
                        user: "erin".into(),
                        side: Side::Buy,
                        price: 90,
                        qty: 1,
                    },
                    vec![],
                    1,
                    None,
                ),
            ),
        );
    }
    append(&config, &log);
    mark_durable(&config, 5);
    let service = query_svc::start(&config).unwrap();
    wait_applied(&service, 5).await;
    let (_, mine, _) = get(&service, "/users/erin/orders?limit=2").await;
    let ids: Vec<u64> = mine["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![7, 6]);
    service.stop();
}

#[tokio::test]
async fn a_corrupt_line_stops_applying_and_health_says_so() {
    let (_dir, config) = setup();
    let lines: Vec<Vec<u8>> = events().iter().map(shared_events::encode).collect();
    let mut bad = lines[1].clone();
    bad[15] ^= 0x01;
    append(&config, &lines[0]);
    append(&config, &bad);
    append(&config, &lines[2]);
    mark_durable(&config, 3);
    let service = query_svc::start(&config).unwrap();
    wait_applied(&service, 1).await;
    wait_read_error(&service.state, "a corrupt line").await;
    let (status, health, _) = get(&service, "/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        health["read_error"].as_str().unwrap().contains("line 2"),
        "{health}"
    );
    assert_eq!(
        health["applied_seq"], 1,
        "nothing past the bad line is applied"
    );
    service.stop();
}

#[tokio::test]
async fn nothing_is_applied_before_the_writer_publishes_a_watermark() {
    let (_dir, config) = setup();
    append(&config, &shared_events::encode(&events()[0]));
    let service = query_svc::start(&config).unwrap();
    // Give the tailer two poll intervals to look at the log: without a watermark it
    // must apply nothing.
    tokio::time::sleep(query_svc::tailer::POLL_INTERVAL * 2).await;
    assert_eq!(
        service.state.applied_seq(),
        0,
        "a log without a watermark is not known durable"
    );
    mark_durable(&config, 1);
    wait_applied(&service, 1).await;
    service.stop();
}

#[tokio::test]
async fn a_clean_stop_writes_a_snapshot_and_the_next_start_uses_it() {
    let (dir, mut config) = setup();
    let lines: Vec<u8> = events().iter().flat_map(shared_events::encode).collect();
    append(&config, &lines);
    mark_durable(&config, 3);
    let service = query_svc::start(&config).unwrap();
    wait_applied(&service, 3).await;
    let (_, book_before, _) = get(&service, "/orderbook").await;
    let (_, trades_before, _) = get(&service, "/trades").await;
    let (_, order_before, _) = get(&service, "/orders/3").await;
    service.stop();
    let snaps: Vec<_> = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(snaps.len(), 1, "{snaps:?}");

    // Damage the log's first line: only a start from the snapshot (which begins after
    // it) can still show seq 3; a start from genesis stops at line 1.
    let mut log = std::fs::read(config.log.file().unwrap()).unwrap();
    log[5] ^= 1;
    std::fs::write(config.log.file().unwrap(), &log).unwrap();
    let service = query_svc::start(&config).unwrap();
    assert_eq!(
        service.state.applied_seq(),
        3,
        "loaded from the snapshot, not replayed"
    );
    assert_eq!(get(&service, "/orderbook").await.1, book_before);
    assert_eq!(get(&service, "/trades").await.1, trades_before);
    assert_eq!(get(&service, "/orders/3").await.1, order_before);
    service.stop();

    // --rebuild ignores the snapshot and replays from genesis: the damaged first line
    // now stops it, as it must (it never skips).
    config.rebuild = true;
    let service = query_svc::start(&config).unwrap();
    wait_read_error(&service.state, "the damaged line 1").await;
    assert_eq!(service.state.applied_seq(), 0);
    service.stop();
}

/// Retention: with room for one finished order, the events above leave resting
/// orders 3 (carol, 1 left after event 3) and no one else's but the newest finished:
/// order 4 (dave, filled at event 3). Bob's order 2 (filled at event 1) and alice's
/// order 1 (cancelled at event 2) are forgotten, with their users' lists; the book
/// and the digest do not change.
#[tokio::test]
async fn only_the_most_recent_finished_orders_are_kept() {
    let (_dir, mut config) = setup();
    config.finished_orders_kept = 1;
    let mut log = Vec::new();
    for e in events() {
        shared_events::encode_into(&mut log, &e);
    }
    append(&config, &log);
    mark_durable(&config, 3);
    let service = query_svc::start(&config).unwrap();
    wait_applied(&service, 3).await;
    let status = |id: u64| service.state.orders.with(id, |o| o.status);
    use query_svc::projection::Status;
    assert_eq!(status(3), Some(Status::Resting));
    assert_eq!(status(4), Some(Status::Filled));
    assert_eq!((status(1), status(2)), (None, None));
    for (user, kept) in [
        ("alice", false),
        ("bob", false),
        ("carol", true),
        ("dave", true),
    ] {
        assert_eq!(service.state.user_orders.contains_key(user), kept, "{user}");
    }
    let (code, body, _) = get(&service, "/orders/1").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("last 1 finished orders are kept"),
        "{body}"
    );
    let (code, _, _) = get(&service, "/orders/4").await;
    assert_eq!(code, StatusCode::OK);
    let (_, book, _) = get(&service, "/orderbook").await;
    assert_eq!(book["bids"][0]["id"], 3);
    assert_eq!(book["bids"][0]["qty"], 1);

    // Unlimited retention folds the same book and digest.
    let genesis = shared_events::BookState::parse(INIT).unwrap();
    let mut all = query_svc::projection::ReadModel::from_state(&genesis, 0);
    for e in events() {
        all.apply(&e).unwrap();
    }
    assert_eq!(all.orders.len(), 4);
    assert_eq!(service.state.view().digest(), all.digest());
    service.stop();
}

/// A log larger than [`query_svc::tailer::PIPELINE_BYTES_MIN`]: events `1..=n`,
/// order `2 + seq` alternately buying at 90 (resting) and selling at 90, which
/// fills the previous buy.
fn big_log(n: u64) -> Vec<u8> {
    let mut log = Vec::new();
    for seq in 1..=n {
        let id = 2 + seq;
        let event = if seq % 2 == 1 {
            Event::limit_placed(
                shared_events::DEFAULT_MARKET,
                Order {
                    id,
                    user: format!("u{}", seq % 7),
                    side: Side::Buy,
                    price: 90,
                    qty: 2,
                },
                vec![],
                2,
                None,
            )
        } else {
            Event::limit_placed(
                shared_events::DEFAULT_MARKET,
                Order {
                    id,
                    user: "s".into(),
                    side: Side::Sell,
                    price: 90,
                    qty: 1,
                },
                vec![Fill {
                    maker_id: id - 1,
                    maker_user: format!("u{}", (seq - 1) % 7),
                    price: 90,
                    qty: 1,
                }],
                0,
                None,
            )
        };
        shared_events::encode_into(&mut log, &env(seq, event));
    }
    log
}

/// A large backlog is caught up with decoding on a second thread: the result is
/// the same model a plain fold of the log gives, and a corrupt line deep inside
/// stops it right before that line, as the one-thread path does.
#[tokio::test]
async fn a_large_backlog_is_caught_up_to_the_same_model() {
    let n = 12_000;
    // Events 1..=n as one large backlog, then two more read the ordinary way.
    let full = big_log(n + 2);
    let mut head_bytes = 0;
    shared_events::scan_until(&full[..], shared_events::LogCursor::start(), n, |_, at| {
        head_bytes = at as usize
    })
    .unwrap();
    let log = &full[..head_bytes];
    assert!(
        log.len() > query_svc::tailer::PIPELINE_BYTES_MIN,
        "the log must take the catch-up path"
    );
    let genesis = shared_events::BookState::parse(INIT).unwrap();
    let mut folded = query_svc::projection::ReadModel::from_state(&genesis, 0);
    shared_events::scan(&full[..], shared_events::LogCursor::start(), |e, _| {
        folded.apply(&e).unwrap()
    })
    .unwrap();

    let (_dir, config) = setup();
    append(&config, log);
    mark_durable(&config, n);
    let service = query_svc::start(&config).unwrap();
    wait_applied(&service, n).await;
    // The catch-up left the cursor right: the next events follow on.
    append(&config, &full[log.len()..]);
    mark_durable(&config, n + 2);
    wait_applied(&service, n + 2).await;
    let snapshot = service.state.view();
    assert_eq!(snapshot.digest(), folded.digest());
    assert_eq!(snapshot.json(0), folded.book_json());
    assert_eq!(service.state.orders.len(), folded.orders.len());
    service.stop();

    // Corrupt line 9 000 (a byte inside its JSON): everything before it is applied,
    // nothing after, and the read side says why.
    let (_dir, config) = setup();
    let mut bad = log.to_vec();
    let start = bad
        .split(|&b| b == b'\n')
        .take(8_999)
        .map(|l| l.len() + 1)
        .sum::<usize>();
    bad[start + 10] ^= 0x01;
    append(&config, &bad);
    mark_durable(&config, n);
    let service = query_svc::start(&config).unwrap();
    wait_applied(&service, 8_999).await;
    let error = wait_read_error(&service.state, "a bad line deep in the log").await;
    assert_eq!(service.state.applied_seq(), 8_999);
    assert!(error.contains("bad line"), "{error}");
    service.stop();
}

/// The hot read route (`http::hot`, answered ahead of warp's filters by
/// `plumbing::serve`) gives exactly the warp route's answer, for every path of its
/// shape and near it, with good and bad queries; or leaves the request to warp.
#[tokio::test]
async fn the_hot_orderbook_route_answers_as_the_warp_route_would() {
    use http_body_util::BodyExt as _;
    use plumbing::serve::{Answer, Head};
    let (_dir, config) = setup();
    let service = query_svc::start(&config).unwrap();
    let lines: Vec<Vec<u8>> = events().iter().map(shared_events::encode).collect();
    for line in &lines {
        append(&config, line);
    }
    mark_durable(&config, lines.len() as u64);
    wait_applied(&service, lines.len() as u64).await;
    let hot = query_svc::http::hot(service.state.clone(), false).expect("hot routes");
    assert!(query_svc::http::hot(service.state.clone(), true).is_none());
    let routes = query_svc::http::routes(service.state.clone(), None);
    let seen = |status: StatusCode, headers: &warp::http::HeaderMap, body: &[u8]| {
        let mut headers: Vec<(String, String)> = (headers.iter())
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        headers.sort();
        (status, headers, body.to_vec())
    };
    let mut taken = 0;
    for path in [
        "/orderbook",
        "/markets/FOLD/orderbook",
        "/markets/NOPE/orderbook",
        "/markets/fold/orderbook",
        "/orderbook/",
        "/markets//orderbook",
        "/xorderbook",
        "/markets/FOLD/trades",
    ] {
        for query in [
            "",
            "depth=10",
            "depth=1",
            "depth=0",
            "at=1",
            "at=99",
            "min_seq=1",
            "min_seq=99&timeout_ms=10",
            "bogus=1",
            "depth=2&depth=3",
        ] {
            let method = warp::http::Method::GET;
            let headers = warp::http::HeaderMap::new();
            let head = Head {
                method: &method,
                path,
                query,
                headers: &headers,
            };
            let Some(answer) = hot(&head) else {
                continue;
            };
            taken += 1;
            let response = match answer {
                Answer::Now(response) => response,
                Answer::Later(future) => future.await,
            };
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let hot_seen = seen(parts.status, &parts.headers, &body);
            let target = if query.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{query}")
            };
            let res = warp::test::request()
                .method("GET")
                .path(&target)
                .reply(&routes)
                .await;
            let warp_seen = seen(res.status(), res.headers(), res.body());
            assert_eq!(hot_seen, warp_seen, "GET {target}");
        }
    }
    assert_eq!(taken, 40, "the four orderbook paths, each with every query");
    let method = warp::http::Method::POST;
    let headers = warp::http::HeaderMap::new();
    let post = Head {
        method: &method,
        path: "/orderbook",
        query: "",
        headers: &headers,
    };
    assert!(hot(&post).is_none(), "only GET is hot");
}
