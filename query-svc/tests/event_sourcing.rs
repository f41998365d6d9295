//! The read side's event-sourcing features in process: read-your-writes (`min_seq`),
//! time travel (`at`), the event stream (`/events`, over a real socket: history, the
//! caught-up marker, live, resuming, and a slow reader that falls behind), and
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
        event: Event::limit_placed(
            shared_events::DEFAULT_MARKET,
            Order {
                id: seq + 2,
                user: format!("u{seq}"),
                side: Side::Buy,
                price: 90 + seq,
                qty: 1,
            },
            vec![],
            1,
            None,
        ),
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

/// One SSE frame of `/events`: a log event (seq, event type) or the marker that the
/// stream turned live after the seq.
#[derive(Debug, Clone, PartialEq)]
enum Frame {
    Event(u64, String),
    CaughtUp(u64),
}

use Frame::CaughtUp;

fn event(seq: u64) -> Frame {
    Frame::Event(seq, "OrderPlaced".into())
}

type Chunks =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, String>> + Send>>;

/// Reads SSE frames from a streaming response.
struct SseReader {
    body: Chunks,
    /// Read and not yet parsed into frames.
    text: String,
    /// Frames parsed but not yet handed out.
    held: Vec<Frame>,
}

impl SseReader {
    fn new(res: reqwest::Response) -> Self {
        SseReader {
            held: Vec::new(),
            body: Box::pin(res.bytes_stream().map(|c| c.map_err(|e| e.to_string()))),
            text: String::new(),
        }
    }

    /// `GET path` over a connection of its own with a small receive buffer (and so no
    /// receive window that grows): what this client does not read soon fills the
    /// server's buffers. HTTP/1.0, so the body is the rest of the connection.
    async fn small_window(addr: std::net::SocketAddr, path: &str) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        let mut conn = socket.connect(addr).await.unwrap();
        conn.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        let body_at = loop {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
                .await
                .expect("an answer within 10 s")
                .unwrap();
            assert!(n > 0, "the connection closed before the answer's head");
            head.extend_from_slice(&buf[..n]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let text = String::from_utf8(head).unwrap();
        assert!(text.starts_with("HTTP/1.0 200"), "{text}");
        let body = futures_util::stream::unfold(conn, |mut conn| async move {
            let mut buf = vec![0u8; 4096];
            match conn.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), conn))
                }
                Err(e) => Some((Err(e.to_string()), conn)),
            }
        });
        SseReader {
            body: Box::pin(body),
            text: text[body_at..].to_owned(),
            held: Vec::new(),
        }
    }

    /// The complete frames read so far, taken out of the text.
    fn frames(&mut self) -> Vec<Frame> {
        let mut got = std::mem::take(&mut self.held);
        while let Some(end) = self.text.find("\n\n") {
            let frame: String = self.text.drain(..end + 2).collect();
            let field = |name: &str| {
                frame
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::to_owned)
            };
            let (id, kind, data) = (field("id:"), field("event:"), field("data:"));
            match (kind.as_deref(), data) {
                (Some("caught-up"), Some(data)) => {
                    assert_eq!(id, None, "the marker has no id: {frame}");
                    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
                    got.push(CaughtUp(data["seq"].as_u64().expect("a seq")));
                    assert_eq!(data.as_object().unwrap().len(), 1, "{frame}");
                }
                (Some(kind), Some(data)) => {
                    let env =
                        shared_events::decode_line(data.as_bytes()).expect("data is the log line");
                    assert_eq!(Some(env.seq.to_string()), id, "{frame}");
                    got.push(Frame::Event(env.seq, kind.to_owned()));
                }
                // Keep-alive comments.
                _ => assert!(frame.lines().all(|l| l.starts_with(':')), "{frame}"),
            }
        }
        got
    }

    /// Reads one more chunk, waiting at most 10 s.
    async fn read(&mut self, so_far: &[Frame]) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
            .await
            .unwrap_or_else(|_| panic!("nothing within 10 s; last frames {:?}", tail(so_far)))
            .expect("the stream ended early")
            .unwrap();
        self.text.push_str(std::str::from_utf8(&chunk).unwrap());
    }

    /// The next `count` frames.
    async fn next(&mut self, count: usize) -> Vec<Frame> {
        let mut got = self.frames();
        while got.len() < count {
            self.read(&got).await;
            got.extend(self.frames());
        }
        assert_eq!(got.len(), count, "more frames than expected: {got:?}");
        got
    }

    /// Frames up to and including the first that is `last`, pausing `pause` after
    /// each read.
    async fn until(&mut self, last: Frame, pause: Duration) -> Vec<Frame> {
        let mut got = self.frames();
        while !got.contains(&last) {
            self.read(&got).await;
            got.extend(self.frames());
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        // A chunk may hold frames after `last` (the marker that follows it, say):
        // they are the next call's.
        let at = got.iter().position(|f| *f == last).expect("found above");
        self.held = got.split_off(at + 1);
        got
    }
}

fn tail(frames: &[Frame]) -> &[Frame] {
    &frames[frames.len().saturating_sub(5)..]
}

/// Serves the read routes on a socket of their own.
async fn serve(service: &QueryService) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        warp::serve(query_svc::http::routes(service.state.clone(), None))
            .incoming(listener)
            .run(),
    );
    (addr, server)
}

#[tokio::test]
async fn events_stream_history_then_live_and_resume() {
    let fx = Fixture::new();
    fx.write(1, 3);
    let service = query_svc::start(&fx.config).unwrap();
    wait_applied(&service, 3).await;
    let (addr, server) = serve(&service).await;
    let url = format!("http://{addr}");
    let client = reqwest::Client::new();

    let res = client
        .get(format!("{url}/events?from=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut from_2 = SseReader::new(res);
    assert_eq!(
        from_2.next(3).await,
        vec![event(2), event(3), CaughtUp(3)],
        "history from the log, then the marker that live events follow"
    );
    let mut live_only = SseReader::new(client.get(format!("{url}/events")).send().await.unwrap());
    assert_eq!(
        live_only.next(1).await,
        vec![CaughtUp(3)],
        "without from: caught up at once, at the current seq"
    );

    fx.write(4, 5);
    assert_eq!(from_2.next(2).await, vec![event(4), event(5)], "then live");
    assert_eq!(
        live_only.next(2).await,
        vec![event(4), event(5)],
        "without from: from the next event on"
    );

    // A reconnecting client resumes after its Last-Event-ID (which wins over ?from).
    let res = client
        .get(format!("{url}/events?from=1"))
        .header("last-event-id", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        SseReader::new(res).next(3).await,
        vec![event(4), event(5), CaughtUp(5)]
    );

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

/// Checks that `frames` are the events `1..=last`, each once and in order, and that
/// each marker says the seq of the event right before it; returns the markers.
fn check_exactly_once(frames: &[Frame], last: u64) -> Vec<u64> {
    let mut next = 1;
    let mut markers = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        match frame {
            Frame::Event(seq, kind) => {
                assert_eq!(
                    *seq,
                    next,
                    "event {next} expected at frame {i}; around it {:?}",
                    &frames[i.saturating_sub(3)..(i + 3).min(frames.len())]
                );
                assert_eq!(kind, "OrderPlaced");
                next += 1;
            }
            CaughtUp(seq) => {
                assert_eq!(
                    *seq,
                    next - 1,
                    "a marker at frame {i} after event {}",
                    next - 1
                );
                markers.push(*seq);
            }
        }
    }
    assert_eq!(next - 1, last, "events up to {last}");
    markers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_every_event_once_in_order() {
    // Far more than the stream's buffer and the sockets' while the reader reads
    // nothing: each burst puts the stream behind.
    const BURST: u64 = 50_000;
    const ROUNDS: u64 = 3;
    // Events appended while the reader reads slowly.
    const STEADY: u64 = 20_000;
    let fx = std::sync::Arc::new(Fixture::new());
    fx.write(1, 10);
    let service = query_svc::start(&fx.config).unwrap();
    wait_applied(&service, 10).await;
    let (addr, server) = serve(&service).await;
    let mut slow = SseReader::small_window(addr, "/events?from=1").await;
    let mut frames = slow.until(CaughtUp(10), Duration::ZERO).await;
    let mut last = 10;
    for _round in 1..=ROUNDS {
        // Many appends, so that the tailer applies many batches.
        for step in 0..100 {
            let from = last + step * BURST / 100;
            fx.write(from + 1, from + BURST / 100);
        }
        last += BURST;
        wait_applied(&service, last).await;
        // The stream fell behind and read history; once through, it is live again.
        frames.extend(slow.until(CaughtUp(last), Duration::ZERO).await);
    }
    // Now the reader pauses after every read while events are appended.
    let writer = {
        let fx = fx.clone();
        let first = last + 1;
        tokio::task::spawn_blocking(move || {
            for step in 0..STEADY / 100 {
                let from = first + step * 100;
                fx.write(from, from + 99);
            }
        })
    };
    last += STEADY;
    frames.extend(slow.until(event(last), Duration::from_millis(1)).await);
    writer.await.unwrap();
    // One more, live or not: nothing came twice before it.
    fx.write(last + 1, last + 1);
    last += 1;
    frames.extend(slow.until(event(last), Duration::ZERO).await);

    let markers = check_exactly_once(&frames, last);
    assert!(
        markers.len() as u64 > ROUNDS,
        "a marker after the history and after each burst: {markers:?}"
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
