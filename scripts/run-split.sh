#!/usr/bin/env bash
# Starts the split setup: command-svc (:8081), query-svc (:8082) and a gateway in
# proxy mode (:8080), all on ./init.txt and ./log.txt, with their logs on this
# terminal, prefixed by who wrote them. Ctrl-C stops all three.
#
#   scripts/run-split.sh                 release build, info logs
#   RUST_LOG=debug scripts/run-split.sh  per-batch detail from the read side
#   QUERY_REPLICAS=2 scripts/run-split.sh  a second query-svc on :8083
set -euo pipefail
cd "$(dirname "$0")/.."

replicas=${QUERY_REPLICAS:-1}
cargo build --release --locked --bins
bin=target/release
export RUST_LOG=${RUST_LOG:-info}

pids=()
stop() {
    trap - INT TERM EXIT
    echo "stopping: ${pids[*]}" >&2
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

start() { # name, then the command
    local name=$1
    shift
    "$@" > >(sed -u "s/^/[$name] /") 2>&1 &
    pids+=($!)
}

wait_listening() { # url
    for _ in $(seq 1 100); do
        curl -fsS "$1/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "run-split.sh: $1 did not come up" >&2
    exit 1
}

start command "$bin/command-svc" --listen 127.0.0.1:8081
wait_listening http://127.0.0.1:8081
query_urls=()
for i in $(seq 1 "$replicas"); do
    port=$((8081 + i))
    start "query$i" "$bin/query-svc" --listen "127.0.0.1:$port"
    query_urls+=(--query-url "http://127.0.0.1:$port")
done
start gateway "$bin/gateway" --listen 127.0.0.1:8080 --command-url http://127.0.0.1:8081 "${query_urls[@]}"
wait_listening http://127.0.0.1:8080
echo "split setup up: http://127.0.0.1:8080 (Ctrl-C stops all three)" >&2
wait
