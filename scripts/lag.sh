#!/usr/bin/env bash
# Summarises the read side's eventual-consistency lag from its log (text or JSON
# format): the per-second "read side caught up" lines that query-svc (or the
# combined gateway) writes with RUST_LOG=info.
#
#   scripts/lag.sh query.log
#   target/release/query-svc 2>&1 | tee query.log   # to get such a file
set -euo pipefail
if [ $# -ne 1 ] || [ ! -r "$1" ]; then
    echo "usage: scripts/lag.sh LOGFILE" >&2
    exit 2
fi
grep -a 'read side caught up' "$1" | awk '
    function grab(key,    m) {
        if (match($0, key "[\"]?[=:][ ]*[0-9.]+")) {
            m = substr($0, RSTART, RLENGTH); sub(/.*[=:][ ]*/, "", m); return m + 0
        }
        return -1
    }
    {
        n++
        ev = grab("events"); if (ev > 0) events += ev
        p50[n] = grab("lag_ms_p50"); p99[n] = grab("lag_ms_p99"); mx = grab("lag_ms_max")
        if (mx > worst) worst = mx
        b = grab("behind"); if (b > behind) behind = b
    }
    function median(a, k,    i, j, t, c) {
        for (i = 1; i <= k; i++) c[i] = a[i]
        for (i = 2; i <= k; i++) { t = c[i]; for (j = i - 1; j > 0 && c[j] > t; j--) c[j + 1] = c[j]; c[j + 1] = t }
        return k % 2 ? c[(k + 1) / 2] : (c[k / 2] + c[k / 2 + 1]) / 2
    }
    END {
        if (n == 0) { print "no lag lines found (is RUST_LOG at info?)"; exit 1 }
        max99 = 0; for (i = 1; i <= n; i++) if (p99[i] > max99) max99 = p99[i]
        printf "intervals: %d (about one per second while events flow)\n", n
        printf "events applied: %d\n", events
        printf "lag_ms p50: median %.3f over the intervals\n", median(p50, n)
        printf "lag_ms p99: median %.3f, worst %.3f\n", median(p99, n), max99
        printf "lag_ms max: %.3f\n", worst
        printf "behind (durable, not yet applied) at most: %d events\n", behind
    }'
