//! Runs the deterministic simulation (the `sim` library of this crate) on many seeds, spread over the
//! machine's cores; `scripts/sim.sh` builds and runs it in release.
//!
//! ```text
//! sim [SEEDS]          SEEDS seeds from SIM_FIRST_SEED (default: a random one, printed)
//! SIM_SEED=S sim       one seed, with its trace on failure
//! SIM_LOG=disk|stream  only the file log on the simulated disk, or only the
//!                      simulated JetStream stream (default: each seed on both)
//! ```
//!
//! Prints `N seeds passed` and what they went through, or the failing seed with the
//! command that replays it, and exits 1.

use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Seeds run when none are given (each on both logs: about two minutes in release on
/// two cores).
const SEEDS_DEFAULT: u64 = 1500;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!("sim: {name}={value:?} is not a number");
            std::process::exit(2);
        }
    }
}

fn main() {
    let (first, count) = match env_u64("SIM_SEED") {
        Some(seed) => (seed, 1),
        None => {
            let count = match std::env::args().nth(1) {
                Some(arg) => arg.parse().unwrap_or_else(|_| {
                    eprintln!("usage: sim [SEEDS]   (SIM_SEED=S for one seed)");
                    std::process::exit(2);
                }),
                None => SEEDS_DEFAULT,
            };
            // Any start is as good as another; a new one each run explores new seeds.
            let first = env_u64("SIM_FIRST_SEED").unwrap_or_else(|| {
                std::collections::hash_map::RandomState::new().hash_one(std::process::id())
                    % 1_000_000_000
            });
            (first, count)
        }
    };
    let logs = sim::SimLog::from_env().unwrap_or_else(|e| {
        eprintln!("sim: {e}");
        std::process::exit(2);
    });
    let names: Vec<&str> = logs.iter().map(|l| l.name()).collect();
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    println!(
        "sim: {count} seeds from {first} on {}, {jobs} at a time",
        names.join(" and ")
    );
    let started = Instant::now();
    let next = AtomicU64::new(first);
    let end = first + count;
    let total = Mutex::new(sim::Stats::default());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(count) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end || !failures.lock().unwrap().is_empty() {
                        break;
                    }
                    for &log in &logs {
                        match log.run(seed) {
                            Ok(stats) => *total.lock().unwrap() += stats,
                            Err(failure) => {
                                failures.lock().unwrap().push((log, failure));
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|(_, f)| f.seed);
    if let Some((log, failure)) = failures.first() {
        println!("{failure}");
        println!(
            "sim: seed {} FAILED on the {} after {elapsed:.1} s; replay it with:\n  SIM_LOG={} SIM_SEED={} scripts/sim.sh",
            failure.seed,
            log.name(),
            log.name(),
            failure.seed
        );
        std::process::exit(1);
    }
    let total = total.into_inner().unwrap();
    println!("sim: {total:?}");
    println!(
        "{count} seeds passed on {} in {elapsed:.1} s",
        names.join(" and ")
    );
}
