//! `loadgen`: a rate-limited order generator for the benchmark (`bench`).
//!
//! It sends COUNT = RATE x DURATION requests on exactly `--connections` keep-alive
//! connections, request `k` due at `k / RATE` seconds after the start, whatever the
//! answers say: connection `c` sends requests `c, c + N, c + 2N, ...`, each at its due
//! time (so the load is spread evenly over the connections and over time, not sent in
//! bursts). The schedule never adapts to the server: HTTP/1.1 cannot have two requests
//! outstanding on one connection, so if an answer comes later than the connection's
//! next due time, that next request goes out the moment the answer arrives, and the
//! ones after it try to catch up with the schedule (the wrk2 model). `late` in the
//! report counts requests sent more than 5 ms after they were due; while it is 0
//! the load is exactly the fixed rate. Latencies are measured from the moment a
//! request was due (`lat_ms_*`, no coordinated omission) and from the moment it was
//! sent (`svc_ms_*`). One `reqwest` client per connection, on a single-threaded
//! tokio runtime, so the generator takes at most one core from the server.
//!
//! The schedule is kept by a pacer thread that sleeps until each request is due
//! and then releases it to its connection: tokio's timer ticks in milliseconds, so
//! a request sent by it would leave up to a millisecond late, which a latency
//! measured from the due time would charge to the server (the hello-world baseline
//! showed a p99 of 2.5 ms at 10 000 requests/s that way). A thread's sleep is
//! precise to tens of microseconds.
//!
//! Orders (`--pattern`):
//! - `cross` (default): alternately `POST /buy/lgN/P` and `POST /sell/lgN/P`, qty 1, at
//!   one price P (`--price`, default 100, between the shipped book's bid 99 and ask
//!   101): a buy rests or fills against a resting sell and vice versa, so the book
//!   stays small and about half the events carry a fill.
//! - `rest`: buys at 1..=90 and sells at 1000..=1999: every order rests and the book
//!   grows by one order per request.
//! - `mixed` (the soak): per request, seeded per connection: 30% orders (100 users,
//!   either side, prices 95..=105, qty 1..=5, so some fill and some rest), 25%
//!   cancels of an order this connection saw resting (an order when it knows none;
//!   cancels outpace resting orders, so the book stays about the same size), 45%
//!   reads (`/orderbook`,
//!   `?depth=10`, the connection's last order with `min_seq`, a user's orders,
//!   trades). A cancel answered 404 "not resting" lost a race with a fill: it is
//!   counted as `raced`, not as an error; every other non-2xx is an error.
//!
//! The last line on stdout is one `key=value` summary, e.g.
//! `loadgen: pattern=Cross sent=100000 ok=100000 errors=0 ... send_rate=9999.9 ...`.
//! Exit status 0 when every request got a 2xx.
//!
//! ```sh
//! cargo run --release -p foldbook-bench --bin loadgen -- --url http://127.0.0.1:8080 --rate 10000 --duration 10
//! ```

use clap::{Parser, ValueEnum};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Pattern {
    /// Alternate buy/sell at one price: fills, small book.
    Cross,
    /// Non-crossing buys and sells: every order rests.
    Rest,
    /// Orders, cancels and reads: the soak's mix.
    Mixed,
}

/// Open-loop order load at a fixed rate.
#[derive(Debug, Parser)]
struct Args {
    /// Base URL of a gateway or command-svc.
    #[arg(long)]
    url: String,
    /// Requests per second.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Keep-alive connections opened up front and shared by the requests.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Which orders to send.
    #[arg(long, value_enum, default_value_t = Pattern::Cross)]
    pattern: Pattern,
    /// The price of the `cross` pattern.
    #[arg(long, default_value_t = 100)]
    price: u64,
    /// Per-request timeout, in seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

/// A request sent later than this after its due time counts as `late`.
const LATE: Duration = Duration::from_millis(5);

/// What one connection saw.
#[derive(Default)]
struct Tally {
    sent: u64,
    ok: u64,
    errors: u64,
    /// Cancels that found the order already filled (mixed pattern).
    raced: u64,
    late: u64,
    first_error: Option<String>,
    /// Microseconds: answer minus due time, answer minus send time.
    from_due: Vec<u64>,
    from_sent: Vec<u64>,
    /// When the last answer arrived, since the start.
    last_answer: Duration,
}

/// One request of the mixed pattern.
struct Mixed {
    post: bool,
    path: String,
    /// For an order: its user, to cancel it later if it rests.
    user: Option<String>,
    /// A cancel (a 404 "not resting" is a lost race, not an error).
    cancel: bool,
}

/// Resting orders a connection remembers for cancels.
const REMEMBERED_MAX: usize = 1_000;

/// The mixed pattern's state on one connection: a seeded generator, the orders it
/// saw resting, its last order.
struct Mixer {
    rng: u64,
    resting: Vec<(String, u64)>,
    /// (id, seq) of the last order placed on this connection.
    last: Option<(u64, u64)>,
}

impl Mixer {
    fn new(seed: u64) -> Self {
        Mixer {
            rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d,
            resting: Vec::new(),
            last: None,
        }
    }

    /// SplitMix64.
    fn next(&mut self, below: u64) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % below
    }

    fn request(&mut self) -> Mixed {
        let roll = self.next(100);
        let user = format!("lg{}", self.next(100));
        let read = |path: String| Mixed {
            post: false,
            path,
            user: None,
            cancel: false,
        };
        match roll {
            0..30 => {}
            30..55 if !self.resting.is_empty() => {
                let at = self.next(self.resting.len() as u64) as usize;
                let (owner, id) = self.resting.swap_remove(at);
                return Mixed {
                    post: true,
                    path: format!("/cancel/{owner}/{id}"),
                    user: None,
                    cancel: true,
                };
            }
            30..55 => {}
            55..70 => return read("/orderbook?depth=10".into()),
            70..78 => return read("/orderbook".into()),
            78..88 => {
                if let Some((id, seq)) = self.last {
                    return read(format!("/orders/{id}?min_seq={seq}"));
                }
                return read("/trades?limit=10".into());
            }
            88..95 => return read(format!("/users/{user}/orders?limit=10")),
            _ => return read("/trades?limit=10".into()),
        }
        let side = if self.next(2) == 0 { "buy" } else { "sell" };
        let (price, qty) = (95 + self.next(11), 1 + self.next(5));
        Mixed {
            post: true,
            path: format!("/{side}/{user}/{price}?qty={qty}"),
            user: Some(user),
            cancel: false,
        }
    }

    /// Remembers what an order's answer says.
    fn placed(&mut self, user: String, answer: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(answer) else {
            return;
        };
        let (Some(id), Some(seq)) = (v["order"]["id"].as_u64(), v["seq"].as_u64()) else {
            return;
        };
        self.last = Some((id, seq));
        if v["resting_qty"].as_u64().unwrap_or(0) > 0 {
            if self.resting.len() == REMEMBERED_MAX {
                self.resting.swap_remove(0);
            }
            self.resting.push((user, id));
        }
    }
}

fn path(args: &Args, k: u64) -> String {
    let user = k % 64;
    match args.pattern {
        Pattern::Mixed => unreachable!("the mixed pattern makes its own requests"),
        Pattern::Cross => {
            let side = if k.is_multiple_of(2) { "buy" } else { "sell" };
            format!("/{side}/lg{user}/{}", args.price)
        }
        Pattern::Rest => {
            if k.is_multiple_of(2) {
                format!("/buy/lg{user}/{}", 1 + (k / 2) % 90)
            } else {
                format!("/sell/lg{user}/{}", 1000 + (k / 2) % 1000)
            }
        }
    }
}

/// The time request `k` is due.
fn due(start: Instant, rate: f64, k: u64) -> Instant {
    start + Duration::from_secs_f64(k as f64 / rate)
}

/// The pacer thread: releases request `k` to connection `k % n` (one permit on its
/// semaphore) once it is due, for every `k` below `total`.
fn pace(start: Instant, rate: f64, total: u64, due_now: &[Arc<tokio::sync::Semaphore>]) {
    let n = due_now.len() as u64;
    let mut k = 0;
    while k < total {
        let now = Instant::now();
        while k < total && due(start, rate, k) <= now {
            due_now[(k % n) as usize].add_permits(1);
            k += 1;
        }
        if k < total {
            std::thread::sleep(due(start, rate, k).saturating_duration_since(Instant::now()));
        }
    }
}

/// Connection `c` of `n`: sends requests `c, c + n, ...` below `total`, each once
/// the pacer says it is due (a permit on `due_now`) and the previous one was
/// answered.
#[expect(clippy::too_many_arguments)]
async fn connection(
    args: Arc<Args>,
    base: String,
    client: reqwest::Client,
    start: Instant,
    c: u64,
    n: u64,
    total: u64,
    due_now: Arc<tokio::sync::Semaphore>,
) -> Tally {
    let mut tally = Tally::default();
    let mut mixer = Mixer::new(c);
    let mut k = c;
    while k < total {
        let due = due(start, args.rate, k);
        match due_now.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => break,
        }
        let sent_at = Instant::now();
        if sent_at.duration_since(due) > LATE {
            tally.late += 1;
        }
        tally.sent += 1;
        let mixed = (args.pattern == Pattern::Mixed).then(|| mixer.request());
        let request = match &mixed {
            Some(m) if !m.post => client.get(format!("{base}{}", m.path)),
            Some(m) => client.post(format!("{base}{}", m.path)),
            None => client.post(format!("{base}{}", path(&args, k))),
        };
        match request.send().await {
            Ok(answer) if answer.status().is_success() => match answer.bytes().await {
                Ok(body) => {
                    tally.ok += 1;
                    if let Some(Mixed {
                        user: Some(user), ..
                    }) = mixed
                    {
                        mixer.placed(user, &body);
                    }
                }
                Err(e) => tally.error(format!("reading the answer: {e}")),
            },
            Ok(answer) => {
                let status = answer.status();
                let body = answer.text().await.unwrap_or_default();
                let lost_race = status == reqwest::StatusCode::NOT_FOUND
                    && mixed.as_ref().is_some_and(|m| m.cancel)
                    && body.contains("not resting");
                if lost_race {
                    tally.raced += 1;
                } else {
                    tally.error(format!("{status}: {}", body.trim()));
                }
            }
            Err(e) => tally.error(format!("{e}")),
        }
        let done = Instant::now();
        tally
            .from_due
            .push(done.duration_since(due).as_micros() as u64);
        tally
            .from_sent
            .push(done.duration_since(sent_at).as_micros() as u64);
        tally.last_answer = done.duration_since(start);
        k += n;
    }
    tally
}

impl Tally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    anyhow::ensure!(
        args.rate > 0.0 && args.duration > 0.0 && args.connections > 0,
        "rate, duration and connections must be > 0"
    );
    let base = args.url.trim_end_matches('/').to_owned();
    let n = args.connections as u64;
    let total = (args.rate * args.duration).round() as u64;

    // One client (one keep-alive connection) per connection task, opened up front.
    let mut clients = Vec::new();
    for _ in 0..n {
        let client = reqwest::Client::builder()
            .http1_only()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs_f64(args.timeout))
            .tcp_nodelay(true)
            .no_proxy()
            .build()?;
        client
            .get(format!("{base}/health"))
            .send()
            .await
            .and_then(|a| a.error_for_status())
            .map_err(|e| anyhow::anyhow!("cannot reach {base}: {e}"))?
            .bytes()
            .await?;
        clients.push(client);
    }

    let start = Instant::now() + Duration::from_millis(10);
    let due_now: Vec<_> = (0..n)
        .map(|_| Arc::new(tokio::sync::Semaphore::new(0)))
        .collect();
    let pacer = {
        let (due_now, rate) = (due_now.clone(), args.rate);
        std::thread::Builder::new()
            .name("pacer".into())
            .spawn(move || pace(start, rate, total, &due_now))?
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (c, client) in clients.into_iter().enumerate() {
        tasks.spawn(connection(
            args.clone(),
            base.clone(),
            client,
            start,
            c as u64,
            n,
            total,
            due_now[c].clone(),
        ));
    }
    let mut all = Tally::default();
    let mut tallies = Vec::new();
    while let Some(tally) = tasks.join_next().await {
        tallies.push(tally?);
    }
    pacer
        .join()
        .map_err(|_| anyhow::anyhow!("the pacer thread panicked"))?;
    for t in tallies {
        all.sent += t.sent;
        all.ok += t.ok;
        all.errors += t.errors;
        all.raced += t.raced;
        all.late += t.late;
        all.last_answer = all.last_answer.max(t.last_answer);
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
        all.from_due.extend(t.from_due);
        all.from_sent.extend(t.from_sent);
    }
    all.from_due.sort_unstable();
    all.from_sent.sort_unstable();
    let answer_s = all.last_answer.as_secs_f64().max(1e-9);
    if let Some(e) = &all.first_error {
        eprintln!("loadgen: first error: {e}");
    }
    println!(
        "loadgen: pattern={:?} sent={} ok={} errors={} raced={} late={} \
         target_rate={:.0} achieved_rate={:.1} duration_s={:.3} connections={n} \
         lat_ms_p50={:.3} lat_ms_p99={:.3} lat_ms_max={:.3} \
         svc_ms_p50={:.3} svc_ms_p99={:.3} svc_ms_max={:.3}",
        args.pattern,
        all.sent,
        all.ok,
        all.errors,
        all.raced,
        all.late,
        args.rate,
        all.ok as f64 / answer_s,
        answer_s,
        percentile(&all.from_due, 0.50),
        percentile(&all.from_due, 0.99),
        percentile(&all.from_due, 1.0),
        percentile(&all.from_sent, 0.50),
        percentile(&all.from_sent, 0.99),
        percentile(&all.from_sent, 1.0),
    );
    std::process::exit(if all.errors == 0 && all.ok + all.raced == total {
        0
    } else {
        1
    });
}
