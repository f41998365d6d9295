//! The deterministic simulation of the storage path (the `sim` library of this crate) on a bounded
//! number of seeds, so every `cargo test` runs it: [`SEEDS_DEFAULT`] seeds from
//! [`FIRST_SEED_DEFAULT`], on the file log (the simulated disk) and on the simulated
//! JetStream stream, one test each. `SIM_SEEDS=N` and `SIM_FIRST_SEED=S` change the
//! range; `SIM_SEED=S` runs that one seed (to replay a failure). `scripts/sim.sh` runs
//! many more in release.

/// Seeds per `cargo test` and log (debug build): well under a minute on two cores.
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

/// Runs the seeds on `log` and returns what they went through, with their count.
fn run(log: sim::SimLog) -> (sim::Stats, u64) {
    let (first, count) = match env_u64("SIM_SEED") {
        Some(seed) => (seed, 1),
        None => (
            env_u64("SIM_FIRST_SEED").unwrap_or(FIRST_SEED_DEFAULT),
            env_u64("SIM_SEEDS").unwrap_or(SEEDS_DEFAULT),
        ),
    };
    let mut total = sim::Stats::default();
    let name = log.name();
    for seed in first..first + count {
        match log.run(seed) {
            Ok(stats) => total += stats,
            Err(failure) => panic!(
                "{failure}\nreplay: SIM_LOG={name} SIM_SEED={seed} scripts/sim.sh   (or SIM_SEED={seed} cargo test -p foldbook-sim --test seeds)"
            ),
        }
    }
    println!("{count} seeds passed on the {name} (from seed {first}): {total:?}");
    (total, count)
}

#[test]
fn seeded_simulation_keeps_every_invariant() {
    let (total, count) = run(sim::SimLog::Disk);
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
        assert!(total.partial_readers > 0, "{total:?}");
        // Half the seeds run with accounts on, and move money in and out.
        assert!(
            total.funded_runs > 0 && total.transfers_acked > 0,
            "{total:?}"
        );
    }
}

#[test]
fn seeded_stream_simulation_keeps_every_invariant() {
    let (total, count) = run(sim::SimLog::Stream);
    assert!(total.events_acked > count, "{total:?}");
    if count >= 50 {
        // Every way a publish can end, and every way the writer answers it.
        assert!(
            total.refused_stale > 0 && total.refused_duplicate > 0,
            "{total:?}"
        );
        assert!(
            total.unclear_answers > 0 && total.read_backs > total.fences && total.fences > 0,
            "{total:?}"
        );
        assert!(
            total.fail_stops > 0 && total.stream_restarts > 0,
            "{total:?}"
        );
        assert!(
            total.second_writer_batches > 0 && total.interlopers > 0,
            "{total:?}"
        );
        assert!(total.retries_answered > 0, "{total:?}");
        assert!(
            total.funded_runs > 0 && total.transfers_acked > 0,
            "{total:?}"
        );
    }
}
