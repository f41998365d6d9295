//! The deterministic simulation of the storage path (the `sim` library of this crate) on a bounded
//! number of seeds, so every `cargo test` runs it: [`SEEDS_DEFAULT`] seeds from
//! [`FIRST_SEED_DEFAULT`]. `SIM_SEEDS=N` and `SIM_FIRST_SEED=S` change the range;
//! `SIM_SEED=S` runs that one seed (to replay a failure). `scripts/sim.sh` runs
//! many more in release.

/// Seeds per `cargo test` (debug build): well under a minute on two cores.
const SEEDS_DEFAULT: u64 = 200;
/// The first of them; fixed, so CI is reproducible.
const FIRST_SEED_DEFAULT: u64 = 1;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

#[test]
fn seeded_simulation_keeps_every_invariant() {
    let (first, count) = match env_u64("SIM_SEED") {
        Some(seed) => (seed, 1),
        None => (
            env_u64("SIM_FIRST_SEED").unwrap_or(FIRST_SEED_DEFAULT),
            env_u64("SIM_SEEDS").unwrap_or(SEEDS_DEFAULT),
        ),
    };
    let mut total = sim::Stats::default();
    for seed in first..first + count {
        match sim::run_seed(seed) {
            Ok(stats) => total += stats,
            Err(failure) => panic!(
                "{failure}\nreplay: SIM_SEED={seed} scripts/sim.sh   (or SIM_SEED={seed} cargo test -p foldbook-sim --test seeds)"
            ),
        }
    }
    // The runs must have exercised what they are for, or they prove nothing.
    assert!(total.events_acked > count, "{total:?}");
    if count >= 50 {
        assert!(
            total.power_cuts > 0 && total.torn_tails_cut > 0,
            "{total:?}"
        );
        assert!(
            total.corruptions_refused > 0 && total.faults_fired > 0,
            "{total:?}"
        );
        assert!(total.retries_answered > 0, "{total:?}");
    }
    println!("{count} seeds passed (from seed {first}): {total:?}");
}
