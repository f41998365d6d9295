#!/usr/bin/env bash
# The cost table (docs/performance.md#cost-table): where the CPU of one durable order
# and of one GET /orderbook goes. A release combined gateway on a fresh copy of the
# shipped init.txt is loaded by wrk -t1 -c64 (scripts/bench/orders.lua: POST /buy and
# /sell at 100, durable; then GET /orderbook) while `perf record -e cpu-clock` samples
# the gateway's threads. The process's CPU time over the window (from /proc/PID/stat)
# divided by the requests answered in it is the CPU per request; each sample's symbol
# puts it in a category (HTTP, hand-off, decide/apply, encode+CRC, write+sync, read
# side, serialization, metrics/logs, runtime, allocation, kernel, other), and the
# table is that split of the CPU per request, in µs. Kernel work done on the process's
# behalf in other threads (the ext4 journal's commit) is not in it.
#
#   scripts/cost-table.sh               10 s per load (DURATION=10)
#   DURATION=20 scripts/cost-table.sh
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-10}
for tool in perf wrk python3; do
    command -v "$tool" >/dev/null || { echo "cost-table.sh: $tool is needed" >&2; exit 1; }
done
cargo build --release --locked --workspace --bins >&2
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cp init.txt "$work/init.txt"
target/release/gateway --listen 127.0.0.1:0 --init "$work/init.txt" --log "$work/log.txt" \
    --snapshot-every 0 >"$work/gateway.log" 2>&1 &
pid=$!
url=
for _ in $(seq 1 100); do
    url=$(sed -n 's/.*listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$work/gateway.log" | head -n1)
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { echo "cost-table.sh: the gateway did not start:" >&2; cat "$work/gateway.log" >&2; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

# One load: warm up, then sample for DURATION seconds; prints "requests cpu_s".
measure() { # name wrk-args...
    local name=$1
    shift
    wrk -t1 -c64 -d2s "$@" >/dev/null
    local before_ticks
    before_ticks=$(cpu_ticks)
    wrk -t1 -c64 -d"${duration}s" "$@" >"$work/$name.wrk" &
    local load=$!
    perf record -q -e cpu-clock -F 1999 -p "$pid" -o "$work/$name.perf" -- sleep "$((duration - 1))" 2>/dev/null
    wait "$load"
    local after_ticks
    after_ticks=$(cpu_ticks)
    local requests
    requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$work/$name.wrk")
    local hz
    hz=$(getconf CLK_TCK)
    echo "$requests $(python3 -c "print(($after_ticks - $before_ticks) / $hz)")"
}

read -r orders orders_cpu < <(measure orders -s scripts/bench/orders.lua "$url")
read -r reads reads_cpu < <(measure reads "$url/orderbook")
for name in orders reads; do
    perf report -q -i "$work/$name.perf" --no-children --sort dso,sym --stdio 2>/dev/null \
        >"$work/$name.report"
done
python3 - "$work" "$orders" "$orders_cpu" "$reads" "$reads_cpu" <<'PY'
import re, sys
work, orders, orders_cpu, reads, reads_cpu = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
# First match wins: (category, pattern on "dso symbol").
CATEGORIES = [
    ("write + fdatasync (ext4, block layer)", r"fdatasync|fsync|ext4|jbd2|blk_|nvme|virtio|iowrite|iomap|filemap_|generic_perform_write|file_write_iter|submit_bio|bio_|file_write_and_wait|writeback"),
    ("encode + CRC-32C", r"crc32c|codec::encode|encode_into|shared_events::codec::[a-z_]*encode"),
    ("decide + apply (write model)", r"command_svc::(book|model|accounts|idempotency)|Book::|Accounts::"),
    ("read side: decode, apply, publish", r"query_svc|decode_line|peek_head|projection|imbl|ReadModel|tailer|Tailer|serde_json::de|serde_json::read|from_slice|from_str|from_utf8|dashmap"),
    ("answer serialization (JSON)", r"serde_json::ser|serialize|Serializer|to_vec|to_writer|format_escaped|itoa|ryu"),
    ("HTTP parse + answer (hyper, warp)", r"hyper|warp|http::|h1::|httparse|headers|bytes::|Filter|filter::|route|tower|smallvec|futures_util"),
    ("hand-offs and wake-ups (the writer's channel, futexes, scheduling)", r"mpsc|oneshot|futex|Condvar|park|unpark|wake|Waker|notify|sync_channel|crossbeam|sem_post|__lll_lock|pthread_cond|try_wake_up|schedule|finish_task_switch|__switch_to|context_switch|dequeue_task|enqueue_task|select_task_rq"),
    ("metrics + logs (and the clock they read)", r"metrics|tracing|prometheus|histogram|Counter|Gauge|log::|fmt::write|time::|clock_gettime|vdso|read_tsc|request_counter|ktime"),
    ("tokio runtime, epoll, sockets (kernel TCP on loopback included)", r"tokio|mio|epoll|tcp_|sock|bbr_|vfs_writev|vfs_readv|do_writev|inet_|ip_|__dev_queue|net_rx|loopback|skb|netif|__netif|napi|recv|send|_raw_spin|__local_bh|do_softirq|__softirqentry|irq_exit|do_syscall|entry_SYSCALL|syscall_exit|syscall_return|__x64_sys|ret_from|copy_user|_copy_to|_copy_from|rep_movs|fput|fget|__fdget|security_|apparmor|rw_verify|aa_"),
    ("memory (allocation, copies)", r"malloc|free|realloc|memcpy|memmove|memset|mi_|je_|alloc::|__rust_alloc|__rust_dealloc|RawVec|mmap|munmap|page_fault|clear_page|do_anonymous|__check_object_size|check_heap_object"),
]
def table(path):
    shares = {}
    unclassified = {}
    for line in open(path):
        m = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(3).strip()
        text = f"{dso} {sym}"
        cat = next((c for c, p in CATEGORIES if re.search(p, text)), "kernel, other" if "[kernel" in dso else "other")
        shares[cat] = shares.get(cat, 0.0) + pct
        if cat in ("kernel, other", "other"):
            unclassified[text] = unclassified.get(text, 0.0) + pct
    return shares, unclassified
for name, n, cpu, what in [("orders", orders, orders_cpu, "durable POST /buy,/sell (64 connections)"), ("reads", reads, reads_cpu, "GET /orderbook (64 connections)")]:
    shares, unclassified = table(f"{work}/{name}.report")
    total = sum(shares.values()) or 1.0
    per = cpu / max(n, 1) * 1e6
    print(f"\n{what}: {n} requests in the window, {cpu:.2f} s of gateway CPU, {per:.1f} µs per request\n")
    print("| where | share | µs per request |")
    print("| --- | --- | --- |")
    for cat, pct in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"| {cat} | {pct / total * 100:.1f}% | {per * pct / total:.2f} |")
    top = sorted(unclassified.items(), key=lambda kv: -kv[1])[:8]
    print("\nlargest of the unclassified: " + "; ".join(f"{t} {p / total * 100:.1f}%" for t, p in top))
PY
