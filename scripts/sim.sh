#!/usr/bin/env bash
# Deterministic simulation of the storage path (the foldbook-sim crate, sim/): runs SEEDS seeds of
# a random workload with seeded disk faults, crashes and power cuts, and on a simulated
# JetStream stream with fences, duplicates, lost acks, restarts and a second writer,
# through the real write and read side code, checking the invariants after every step
# (docs/simulation.md). Each seed runs on both logs. Release build; seeds run on all cores.
#
#   scripts/sim.sh              1500 seeds (about two minutes on two cores) from a random start
#   scripts/sim.sh 5000         that many
#   SIM_LOG=stream scripts/sim.sh 3000  only the stream (SIM_LOG=disk: only the file log)
#   SIM_SEED=1234 scripts/sim.sh        replay one seed (prints its trace on failure)
#   SIM_FIRST_SEED=1 scripts/sim.sh 500 a fixed range
#
# Prints "N seeds passed", or the failing seed and the command that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "sim.sh: cargo is not installed; install Rust from https://rustup.rs first" >&2
    exit 1
fi

cargo build --locked --release -p foldbook-sim --bin sim
exec target/release/sim "$@"
