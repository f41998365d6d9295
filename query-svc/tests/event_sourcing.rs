//! The read side's event-sourcing features in process: read-your-writes (`min_seq`),
//! time travel (`at`), the event stream (`/events`, over a real socket), and
//! snapshots of another fold version being ignored.

use futures_util::StreamExt;
use query_svc::projection::ReadModel;
mod common;
use common::wait_read_error;
use query_svc::{Config, QueryService};
use shared_events::{BookState, Envelope, Event, Order, SCHEMA_VERSION, Side, Watermark};
use std::io::Write;
use std::time::Duration;

const INIT: &str = r#"{"next_order_id": 3, "orders": [
  {"id": 1, "user": "alice", "side": "buy", "price": 99, "qty": 10},
  {"id": 2, "user": "bob", "side": "sell", "price": 101, "qty": 5}
]}"#;

/// Event `seq` places order `seq + 2`, a buy at `90 + seq` that rests.
fn placed(seq: u64) -> Envelope {
    Envelope {
        seq,
        ts_us: 1,
        v: SCHEMA_VERSION,
        event: Event::OrderPlaced {
            market: shared_events::DEFAULT_MARKET,
            order: Order {
                id: seq + 2,
                user: format!("u{seq}"),
                side: Side::Buy,
                price: 90 + seq,
                qty: 1,
            },
            fills: vec![],
            resting_qty: 1,
            idempotency_key: None,
        },
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    config: Config,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("init.txt"), INIT).unwrap();
        let config = Config::new(dir.path().join("init.txt"), dir.path().join("log.txt"));
        Fixture { _dir: dir, config }
    }

    /// Appends events `from..=to` and marks them durable, as the writer does.
    fn write(&self, from: u64, to: u64) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.config.log.file().unwrap())
            .unwrap();
        for seq in from..=to {
            f.write_all(&shared_events::encode(&placed(seq))).unwrap();
        }
        let len = std::fs::metadata(self.config.log.file().unwrap())
            .unwrap()
            .len();
        let path = shared_events::watermark::path_for(self.config.log.file().unwrap());
        std::fs::write(path, Watermark::now(to, len).encode()).unwrap();
    }
}

async fn wait_applied(service: &QueryService, seq: u64) {
    let mut rx = service.state.subscribe();
    let reached = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|&s| s >= seq)).await;
    assert!(
        reached.is_ok(),
        "read side did not reach seq {seq} (at {})",
        service.state.applied_seq()
    );
}

async fn get(service: &QueryService, path: &str) -> (u16, serde_json::Value) {
    let routes = query_svc::http::routes(service.state.clone(), None);
    let res = warp::test::request()
        .method("GET")
        .path(path)
        .reply(&routes)
        .await;
    (
        res.status().as_u16(),
        serde_json::from_slice(res.body()).unwrap(),
    )
}

#[tokio::test]
async fn min_seq_waits_for_the_write_or_answers_504() {
    let fx = Fixture::new();
    fx.write(1, 1);
    let service = query_svc::start(&fx.config).unwrap();
    wait_applied(&service, 1).await;

    let (status, body) = get(&service, "/orderbook?min_seq=2&timeout_ms=50").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(
        body["seq"], 1,
        "the 504 says how far the read side is: {body}"
    );
    assert!(body["error"].as_str().unwrap().contains("seq 2"), "{body}");

    // A read that waits sees the write as soon as it is applied.
    let routes = query_svc::http::routes(service.state.clone(), None);
    let waiting = tokio::spawn(async move {
        let res = warp::test::request()
            .path("/orders/4?min_seq=2&timeout_ms=10000")
            .reply(&routes)
            .await;
        (
            res.status().as_u16(),
            serde_json::from_slice::<serde_json::Value>(res.body()).unwrap(),
        )
    });
    fx.write(2, 2);
    let (status, order) = waiting.await.unwrap();
    assert_eq!((status, order["id"].as_u64()), (200, Some(4)), "{order}");
    for path in [
        "/trades?min_seq=2",
        "/users/u2/orders?min_seq=2&limit=1",
        "/orderbook?min_seq=0",
    ] {
        assert_eq!(get(&service, path).await.0, 200, "{path}");
    }
    for bad in [
        "/orderbook?min_seq=x",
        "/orderbook?min_seq=-1",
        "/orderbook?min_seq=1&timeout_ms=10001",
    ] {
        assert_eq!(get(&service, bad).await.0, 400, "{bad}");
    }
    // Invalid input is refused at once, not after waiting for a seq that never comes.
    let started = std::time::Instant::now();
    for bad in [
        "/orderbook?min_seq=99&timeout_ms=10000&depth=0",
        "/orderbook?min_seq=99&timeout_ms=10000&at=x",
        "/orders/0?min_seq=99&timeout_ms=10000",
        "/users/no%20one/orders?min_seq=99&timeout_ms=10000",
        "/trades?min_seq=99&timeout_ms=10000&limit=1001",
        "/events?min_seq=99&timeout_ms=10000&from=-1",
    ] {
        assert_eq!(get(&service, bad).await.0, 400, "{bad}");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "a 400 waited");
    service.stop();
}

#[tokio::test]
async fn time_travel_shows_the_book_after_event_n() {
    let fx = Fixture::new();
    fx.write(1, 5);
    let genesis = BookState::parse(INIT).unwrap();
    let expected = |n: u64| {
        let mut model = ReadModel::from_state(&genesis, 0);
        for seq in 1..=n {
            model.apply(&placed(seq)).unwrap();
        }
        serde_json::from_slice::<serde_json::Value>(&model.book_json()).unwrap()
    };
    let service = query_svc::start(&fx.config).unwrap();
    wait_applied(&service, 5).await;
    for n in 0..=5 {
        let (status, book) = get(&service, &format!("/orderbook?at={n}")).await;
        assert_eq!(status, 200);
        assert_eq!(book, expected(n), "at={n}");
        assert_eq!(book["seq"], n);
    }
    let (status, body) = get(&service, "/orderbook?at=6").await;
    assert_eq!(status, 400, "beyond the head: {body}");
    service.stop();

    // From a snapshot (the clean stop wrote one at seq 5): at=5 and before still work.
    fx.write(6, 7);
    let service = query_svc::start(&fx.config).unwrap();
    wait_applied(&service, 7).await;
    for n in [2, 5, 6, 7] {
        assert_eq!(
            get(&service, &format!("/orderbook?at={n}")).await.1,
            expected(n),
            "at={n}"
        );
    }
    service.stop();
}

/// Reads SSE frames (`id`, `event`, `data`) from a streaming response.
struct SseReader {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    text: String,
}

impl SseReader {
    fn new(res: reqwest::Response) -> Self {
        SseReader {
            body: Box::pin(res.bytes_stream()),
            text: String::new(),
        }
    }

    /// The next `count` events as (seq, event type), waiting at most 10 s for each chunk.
    async fn next(&mut self, count: usize) -> Vec<(u64, String)> {
        let mut got = Vec::new();
        while got.len() < count {
            while let Some(end) = self.text.find("\n\n") {
                let frame: String = self.text.drain(..end + 2).collect();
                let field = |name: &str| {
                    frame
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(str::to_owned)
                };
                if let (Some(id), Some(kind), Some(data)) =
                    (field("id:"), field("event:"), field("data:"))
                {
                    let env =
                        shared_events::decode_line(data.as_bytes()).expect("data is the log line");
                    assert_eq!(env.seq.to_string(), id);
                    got.push((env.seq, kind));
                }
            }
            if got.len() >= count {
                break;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .unwrap_or_else(|_| panic!("no event within 10 s; so far {got:?}"))
                .expect("the stream ended early")
                .unwrap();
            self.text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        got
    }
}

fn seqs(events: &[(u64, String)]) -> Vec<u64> {
    events.iter().map(|e| e.0).collect()
}

#[tokio::test]
async fn events_stream_history_then_live_and_resume() {
    let fx = Fixture::new();
    fx.write(1, 3);
    let service = query_svc::start(&fx.config).unwrap();
    wait_applied(&service, 3).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        warp::serve(query_svc::http::routes(service.state.clone(), None))
            .incoming(listener)
            .run(),
    );
    let client = reqwest::Client::new();

    let res = client
        .get(format!("{url}/events?from=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut from_2 = SseReader::new(res);
    let history = from_2.next(2).await;
    assert_eq!(seqs(&history), vec![2, 3], "history from the log");
    assert!(history.iter().all(|e| e.1 == "OrderPlaced"));
    let mut live_only = SseReader::new(client.get(format!("{url}/events")).send().await.unwrap());

    // The first stream has sent its history, so it is subscribed to live events.
    fx.write(4, 5);
    assert_eq!(seqs(&from_2.next(2).await), vec![4, 5], "then live");
    assert_eq!(
        seqs(&live_only.next(2).await),
        vec![4, 5],
        "without from: from the next event on"
    );

    // A reconnecting client resumes after its Last-Event-ID (which wins over ?from).
    let res = client
        .get(format!("{url}/events?from=1"))
        .header("last-event-id", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(seqs(&SseReader::new(res).next(2).await), vec![4, 5]);

    let res = client
        .get(format!("{url}/events?from=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    server.abort();
    service.stop();
}

#[tokio::test]
async fn a_snapshot_of_another_fold_version_is_ignored() {
    let fx = Fixture::new();
    fx.write(1, 3);
    let service = query_svc::start(&fx.config).unwrap();
    wait_applied(&service, 3).await;
    service.stop();
    // Damage line 1: only the snapshot (taken after it) lets a start reach seq 3.
    let mut log = std::fs::read(fx.config.log.file().unwrap()).unwrap();
    log[10] ^= 1;
    std::fs::write(fx.config.log.file().unwrap(), &log).unwrap();
    let service = query_svc::start(&fx.config).unwrap();
    assert_eq!(service.state.applied_seq(), 3);
    service.stop();
    // Another fold version: the snapshot is ignored, the read side rebuilds from
    // genesis, and so stops at the damaged line 1.
    for entry in std::fs::read_dir(fx.config.snapshot_dir()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let ours = format!("\"fold_version\":{}", query_svc::checkpoint::FOLD_VERSION);
        std::fs::write(&path, text.replacen(&ours, "\"fold_version\":99", 1)).unwrap();
    }
    let service = query_svc::start(&fx.config).unwrap();
    assert_eq!(service.state.applied_seq(), 0);
    let error = wait_read_error(&service.state, "the damaged line 1").await;
    assert!(error.contains("line 1"), "{error}");
    service.stop();
}

#[tokio::test]
async fn a_client_that_does_not_read_is_cut_off() {
    let fx = Fixture::new();
    fx.write(1, 1);
    let service = query_svc::start(&fx.config).unwrap();
    wait_applied(&service, 1).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        warp::serve(query_svc::http::routes(service.state.clone(), None))
            .incoming(listener)
            .run(),
    );
    let mut slow = SseReader::new(reqwest::get(format!("{url}/events?from=1")).await.unwrap());
    assert_eq!(seqs(&slow.next(1).await), vec![1]);
    // Far more than the stream's buffer and the socket's while the client reads nothing.
    let burst = 60_000;
    fx.write(2, 1 + burst);
    wait_applied(&service, 1 + burst).await;
    let mut received = 0u64;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.body.next()).await {
            Ok(Some(Ok(chunk))) => received += chunk.iter().filter(|&&b| b == b'\n').count() as u64,
            Ok(None) | Ok(Some(Err(_))) => break,
            Err(_) => panic!("the slow stream was neither cut nor finished"),
        }
    }
    assert!(
        received < 4 * burst,
        "the stream ended before sending everything ({received} lines)"
    );
    server.abort();
    service.stop();
}

#[tokio::test]
async fn depth_aggregates_price_levels() {
    let fx = Fixture::new();
    // Events 1..=3 add buys at 91, 92, 93 beside init.txt's bid at 99 and ask at 101.
    fx.write(1, 3);
    let service = query_svc::start(&fx.config).unwrap();
    wait_applied(&service, 3).await;
    let (status, depth) = get(&service, "/orderbook?depth=2").await;
    assert_eq!(status, 200);
    assert_eq!(
        depth,
        serde_json::json!({
            "seq": 3, "market": "FOLD", "depth": 2,
            "bids": [{"price": 99, "qty": 10, "orders": 1}, {"price": 93, "qty": 1, "orders": 1}],
            "asks": [{"price": 101, "qty": 5, "orders": 1}],
        })
    );
    let (_, old) = get(&service, "/orderbook?at=0&depth=5").await;
    assert_eq!(
        old["bids"],
        serde_json::json!([{"price": 99, "qty": 10, "orders": 1}])
    );
    for bad in [
        "/orderbook?depth=0",
        "/orderbook?depth=10001",
        "/orderbook?depth=x",
    ] {
        assert_eq!(get(&service, bad).await.0, 400, "{bad}");
    }
    service.stop();
}
