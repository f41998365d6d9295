//! `genlog`: writes a synthetic, valid foldbook data set for the benchmark (`bench`):
//! `OUT_DIR/init.txt` (an empty book, `next_order_id` 1) and `OUT_DIR/log.txt` with
//! COUNT `OrderPlaced` events that all rest and never cross: buys and sells
//! alternate, buys at `499_999 - (k % levels)`, sells at `500_001 + (k % levels)`,
//! ids 1..=COUNT, seq 1..=COUNT, no fills, `resting_qty` = `qty`. After replaying it
//! the book holds exactly COUNT resting orders.
//!
//! With `--markets M`, the data set has M markets (`M0`, `M1`, ...; base the same
//! symbol, quote `USD`), listed in `init.txt`, and orders k and k + 1 (a buy and a
//! sell, k even) are in market `M{k / 2 % M}`: each market's book gets its share of
//! both sides, none crossed.
//!
//! With `--finished F` (even), F more events follow: pairs of a buy at 500 000 (between
//! the two sides, so it rests) and a sell at 500 000 that fills it, leaving F finished
//! (filled) orders for the read side to keep and the book as it was.
//!
//! ```sh
//! cargo run --release -p foldbook-bench --bin genlog -- 1000000 target/bench/genlog
//! ```
//!
//! No `log.txt.durable` is written: the writer (command-svc or gateway) recovers the
//! log and writes the watermark at start; a query-svc started on its own waits for it.

use clap::Parser;
use shared_events::{Envelope, Event, Fill, Order, SCHEMA_VERSION, Side};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Writes init.txt + log.txt with COUNT resting, non-crossing orders.
#[derive(Debug, Parser)]
struct Args {
    /// Number of events (= resting orders).
    count: u64,
    /// Directory to write `init.txt` and `log.txt` into (created if missing).
    out_dir: PathBuf,
    /// Price levels per side the orders are spread over (1..=499_999).
    #[arg(long, default_value_t = 1000)]
    levels: u64,
    /// Distinct user names (`u0`, `u1`, ...).
    #[arg(long, default_value_t = 1000)]
    users: u64,
    /// Finished (filled) orders to add after the resting ones, in buy/sell pairs
    /// that fill each other (an even number).
    #[arg(long, default_value_t = 0)]
    finished: u64,
    /// Markets (`M0`..): 0 for a state file without a `markets` list (the one
    /// default market).
    #[arg(long, default_value_t = 0)]
    markets: u64,
}

/// The symbol of market `i` of a generated set.
fn market(i: u64) -> shared_events::Symbol {
    shared_events::Symbol::parse(&format!("M{i}")).expect("M and digits is a symbol")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (1..=499_999).contains(&args.levels),
        "--levels must be 1..=499999"
    );
    anyhow::ensure!(args.users >= 1, "--users must be at least 1");
    anyhow::ensure!(args.finished % 2 == 0, "--finished must be even");
    anyhow::ensure!(
        args.markets <= shared_events::state::MARKETS_MAX as u64,
        "--markets must be at most {}",
        shared_events::state::MARKETS_MAX
    );
    anyhow::ensure!(
        args.finished == 0 || args.markets <= 1,
        "--finished goes with one market"
    );
    std::fs::create_dir_all(&args.out_dir)?;
    let state = if args.markets == 0 {
        "{\"next_order_id\": 1, \"orders\": []}\n".to_owned()
    } else {
        let markets: Vec<_> = (0..args.markets)
            .map(|i| shared_events::state::MarketSpec {
                symbol: market(i),
                base: market(i),
                quote: shared_events::market::DEFAULT_QUOTE,
            })
            .collect();
        serde_json::to_string(&shared_events::BookState::empty_of(markets))? + "\n"
    };
    std::fs::write(args.out_dir.join("init.txt"), state)?;
    let market_of = |k: u64| match args.markets {
        0 => shared_events::DEFAULT_MARKET,
        // Pairs (a buy and a sell) go to one market, so each gets both sides.
        n => market(k / 2 % n),
    };
    let path = args.out_dir.join("log.txt");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
    let started = Instant::now();
    let ts0 = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as u64;
    let mut buf = Vec::with_capacity(512);
    let mut bytes = 0u64;
    for k in 0..args.count {
        let seq = k + 1;
        let step = (k / 2) % args.levels;
        let (side, price) = if k.is_multiple_of(2) {
            (Side::Buy, 499_999 - step)
        } else {
            (Side::Sell, 500_001 + step)
        };
        let qty = 1 + k % 100;
        let env = Envelope {
            seq,
            ts_us: ts0 + k,
            v: SCHEMA_VERSION,
            event: Event::limit_placed(
                market_of(k),
                Order {
                    id: seq,
                    user: format!("u{}", k % args.users),
                    side,
                    price,
                    qty,
                },
                vec![],
                qty,
                None,
            ),
        };
        buf.clear();
        shared_events::encode_into(&mut buf, &env); // one line, `\n` included
        bytes += buf.len() as u64;
        out.write_all(&buf)?;
    }
    // Pairs that fill each other at 500 000, inside the spread.
    for k in 0..args.finished {
        let seq = args.count + k + 1;
        let (user, qty) = (format!("u{}", seq % args.users), 1 + k / 2 % 100);
        let (side, fills, resting_qty) = if k.is_multiple_of(2) {
            (Side::Buy, vec![], qty)
        } else {
            let maker_user = format!("u{}", (seq - 1) % args.users);
            let fill = Fill {
                maker_id: seq - 1,
                maker_user,
                price: 500_000,
                qty,
            };
            (Side::Sell, vec![fill], 0)
        };
        let env = Envelope {
            seq,
            ts_us: ts0 + seq,
            v: SCHEMA_VERSION,
            event: Event::limit_placed(
                market_of(0),
                Order {
                    id: seq,
                    user,
                    side,
                    price: 500_000,
                    qty,
                },
                fills,
                resting_qty,
                None,
            ),
        };
        buf.clear();
        shared_events::encode_into(&mut buf, &env);
        bytes += buf.len() as u64;
        out.write_all(&buf)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    eprintln!(
        "genlog: {} events, {} bytes in {} ({:.1} s)",
        args.count + args.finished,
        bytes,
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
