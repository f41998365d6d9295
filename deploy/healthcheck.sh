#!/bin/bash
# Container health probe: exit 0 when GET /health answers 200, else 1. Needs only
# bash (no curl in the slim image). Installed as /usr/local/bin/foldbook-healthcheck.
#
#   foldbook-healthcheck [[HOST:]PORT]
#
# Without an argument it finds the running gateway / command-svc / query-svc in
# /proc and probes the address it listens on (--listen, else the *_LISTEN variable,
# else the binary's default port), so one image HEALTHCHECK fits all three commands.
set -u

target=${1:-}
if [[ -z $target ]]; then
    for dir in /proc/[0-9]*; do
        { read -r comm <"$dir/comm"; } 2>/dev/null || continue
        case $comm in
            gateway) target=${GATEWAY_LISTEN:-127.0.0.1:8080} ;;
            command-svc) target=${COMMAND_LISTEN:-127.0.0.1:8081} ;;
            query-svc) target=${QUERY_LISTEN:-127.0.0.1:8082} ;;
            *) continue ;;
        esac
        mapfile -d '' argv <"$dir/cmdline" 2>/dev/null || argv=()
        for ((i = 0; i < ${#argv[@]}; i++)); do
            case ${argv[i]} in
                --listen) target=${argv[i + 1]:-$target} ;;
                --listen=*) target=${argv[i]#--listen=} ;;
            esac
        done
        break
    done
    [[ -n $target ]] || { echo "no foldbook process found" >&2; exit 1; }
fi

port=${target##*:}
host=${target%:*}
[[ $host == "$target" ]] && host=127.0.0.1          # PORT alone
host=${host#[}; host=${host%]}                       # [::1] -> ::1
case $host in 0.0.0.0 | :: | '') host=127.0.0.1 ;;  # wildcard: probe loopback
esac

exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET /health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
IFS= read -r -t 5 status <&3 || exit 1
[[ $status =~ ^HTTP/1\.[01]\ 200[\ $'\r'] ]] || { echo "unhealthy: ${status%$'\r'}" >&2; exit 1; }
