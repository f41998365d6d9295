//! Crash tests: real binaries under load from concurrent clients, killed with
//! SIGKILL at a random moment, restarted; every acknowledged order and cancel must
//! be there afterwards, and the log must be whole (every line valid, seq 1..n).
//! The seed of the random moments is printed; `CRASH_SEED=...` replays it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use test_support::load::{Acks, Load};
use test_support::*;

const CYCLES: usize = 20;
const CLIENTS: usize = 8;
/// The whole test stays well under two minutes; this bounds it even if it goes wrong.
const TEST_TIME_MAX: Duration = Duration::from_secs(110);

/// A small deterministic generator (xorshift64*), enough for picking moments.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("crash test seed: CRASH_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// What clients were told succeeded.
#[derive(Default)]
struct Acked {
    /// Order ids answered 201.
    placed: Vec<u64>,
    /// Order ids whose cancel was answered 200.
    cancelled: Vec<u64>,
}

impl Acks for Acked {
    fn count(&self) -> usize {
        self.placed.len()
    }
}

impl Acked {
    /// Adds what a later round was told.
    fn extend(&mut self, more: Acked) {
        self.placed.extend(more.placed);
        self.cancelled.extend(more.cancelled);
    }
}

/// Clients that place (and now and then cancel) orders against `write_url` until
/// stopped or the server goes away.
fn start_load(write_url: &str) -> Load<Acked> {
    Load::<Acked>::start(CLIENTS, |c, acked, stop| {
        let base = write_url.to_owned();
        async move {
            let client = client();
            let user = format!("c{c}");
            let mut resting: Vec<u64> = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                if i.is_multiple_of(5) && !resting.is_empty() {
                    let id = resting.remove(0);
                    let Ok(res) = client
                        .post(format!("{base}/cancel/{user}/{id}"))
                        .send()
                        .await
                    else {
                        return;
                    };
                    match res.status().as_u16() {
                        200 => acked.lock().unwrap().cancelled.push(id),
                        404 => {} // filled meanwhile
                        other => panic!("cancel {id}: unexpected status {other}"),
                    }
                    continue;
                }
                let side = if (c + i).is_multiple_of(2) {
                    "buy"
                } else {
                    "sell"
                };
                let price = 90 + (c * 5 + i * 7) % 21;
                let url = format!("{base}/{side}/{user}/{price}?qty={}", 1 + i % 3);
                let Ok(res) = client.post(&url).send().await else {
                    return;
                };
                if res.status() != 201 {
                    panic!("{url}: unexpected status {}", res.status());
                }
                let Ok(body) = res.json::<serde_json::Value>().await else {
                    return;
                };
                let id = body["order"]["id"].as_u64().unwrap();
                acked.lock().unwrap().placed.push(id);
                if body["resting_qty"].as_u64().unwrap() > 0 {
                    resting.push(id);
                }
            }
        }
    })
}

/// Waits (bounded) until the clients got their first acknowledgement, so the kill
/// that follows lands while writes are flowing.
async fn load_flowing(load: &Load<Acked>) {
    load.acks_reach(1, Duration::from_secs(20), "the load placed nothing")
        .await;
}

/// Checks every acknowledged order and cancel against the read side at `read_url`.
async fn check_acked(read_url: &str, acked: &Acked, cycle: usize) {
    let client = client();
    for id in &acked.placed {
        let res = client
            .get(format!("{read_url}/orders/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            200,
            "cycle {cycle}: acknowledged order {id} is missing after kill -9"
        );
    }
    for id in &acked.cancelled {
        let order = get_json(&client, &format!("{read_url}/orders/{id}")).await;
        assert_eq!(
            order["status"], "cancelled",
            "cycle {cycle}: acknowledged cancel of {id} is lost: {order}"
        );
    }
}

/// Waits (bounded) until the read side `query` has applied what `command` holds
/// durable; returns that durable seq.
async fn read_side_at_durable(command: &Proc, query: &Proc) -> serde_json::Value {
    let durable =
        get_json(&client(), &format!("{}/health", command.url)).await["durable_seq"].clone();
    applied(
        &client(),
        &query.url,
        durable.clone(),
        Duration::from_secs(10),
    )
    .await;
    durable
}

/// The log holds seq 1..=n with every line valid and nothing torn; returns n.
fn check_log_whole(dir: &std::path::Path) -> u64 {
    let file = std::fs::File::open(dir.join("log.txt")).unwrap();
    let report = shared_events::scan(file, shared_events::LogCursor::start(), |_, _| {})
        .expect("the log is valid");
    assert_eq!(report.torn, None, "after recovery the log has no torn tail");
    report.cursor.next_seq - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_write_combined() {
    let started = Instant::now();
    let mut rng = Rng::from_env();
    let dir = workdir();
    let env = [("FOLDBOOK_SNAPSHOT_EVERY", "150")];
    let mut total = Acked::default();
    for cycle in 0..CYCLES {
        assert!(
            started.elapsed() < TEST_TIME_MAX,
            "crash test exceeded its time bound at cycle {cycle}"
        );
        let gw = Proc::start_with_env("gateway", dir.path(), &[], &env);
        if cycle > 0 {
            caught_up(&client(), &gw.url).await;
            check_acked(&gw.url, &total, cycle).await;
            let health = get_json(&client(), &format!("{}/health", gw.url)).await;
            assert_eq!(
                health["durable_seq"],
                check_log_whole(dir.path()),
                "cycle {cycle}"
            );
        }
        let load = start_load(&gw.url);
        load_flowing(&load).await;
        tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
        gw.kill9();
        total.extend(load.stop().await);
    }
    let gw = Proc::start_with_env("gateway", dir.path(), &[], &env);
    caught_up(&client(), &gw.url).await;
    check_acked(&gw.url, &total, CYCLES).await;
    assert!(
        gw.log().contains("starts from a snapshot"),
        "snapshots were used: {}",
        gw.log()
    );
    assert_eq!(gw.terminate().code(), Some(0));
    let out = run("command-svc", dir.path(), &["verify"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && report.contains("torn tail: none"),
        "{report}"
    );
    eprintln!(
        "{} orders and {} cancels acknowledged over {CYCLES} kill -9 cycles, all present",
        total.placed.len(),
        total.cancelled.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_write_split() {
    let started = Instant::now();
    let mut rng = Rng::from_env();
    let dir = workdir();
    let env = [("FOLDBOOK_SNAPSHOT_EVERY", "150")];
    let mut total = Acked::default();
    let mut query = Proc::start_with_env("query-svc", dir.path(), &[], &env);
    for cycle in 0..CYCLES {
        assert!(
            started.elapsed() < TEST_TIME_MAX,
            "crash test exceeded its time bound at cycle {cycle}"
        );
        let command = Proc::start_with_env("command-svc", dir.path(), &[], &env);
        if cycle > 0 {
            let durable = read_side_at_durable(&command, &query).await;
            check_acked(&query.url, &total, cycle).await;
            assert_eq!(durable, check_log_whole(dir.path()), "cycle {cycle}");
        }
        let load = start_load(&command.url);
        load_flowing(&load).await;
        tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
        command.kill9();
        if cycle % 3 == 1 {
            // The read side dies too, at about the same moment, and comes back.
            query.kill9();
            query = Proc::start_with_env("query-svc", dir.path(), &[], &env);
        }
        total.extend(load.stop().await);
    }
    let command = Proc::start_with_env("command-svc", dir.path(), &[], &env);
    let durable = read_side_at_durable(&command, &query).await;
    check_acked(&query.url, &total, CYCLES).await;
    // The read side never showed more than is durable.
    assert_eq!(
        get_json(&client(), &format!("{}/health", query.url)).await["applied_seq"],
        durable
    );
    eprintln!(
        "split: {} orders and {} cancels acknowledged over {CYCLES} kill -9 cycles, all present",
        total.placed.len(),
        total.cancelled.len()
    );
}
