#!/usr/bin/env bash
# A curl walk-through against a running server: places, matches and cancels orders,
# reads them back, and checks each answer; with accounts on (init-accounts.txt) it
# funds its user first and checks deposits, withdrawals and balances too. Leaves
# its orders and transfers in the log.
#
#   scripts/smoke.sh                        against http://127.0.0.1:8080
#   scripts/smoke.sh http://127.0.0.1:18080
set -euo pipefail
base=${1:-http://127.0.0.1:8080}
user=smoke$$
step=0

say() { step=$((step + 1)); printf '\n%d. %s\n' "$step" "$*"; }
call() { # method path expected-status -> prints the body
    local method=$1 path=$2 want=$3 out status
    out=$(curl -sS -X "$method" -w '\n%{http_code}' "$base$path")
    status=${out##*$'\n'}
    body=${out%$'\n'*}
    printf '   %s %s -> %s %s\n' "$method" "$path" "$status" "$body"
    if [ "$status" != "$want" ]; then
        echo "smoke.sh: expected $want from $method $path, got $status" >&2
        exit 1
    fi
}
field() { # name: a number from $body
    sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$body" | head -n1
}

say "health"
call GET /health 200
say "accounts: on (fund this user) or off"
out=$(curl -sS -o /dev/null -w '%{http_code}' "$base/assets")
accounts=no
if [ "$out" = 200 ]; then
    accounts=yes
    call GET /assets 200
    assets=$(grep -o '"[A-Z][A-Z0-9]*":{"deposited"' <<<"$body" | cut -d'"' -f2)
    for asset in $assets; do
        call POST "/deposit/$user/$asset/1000000" 200
    done
    say "nothing bought without the money"
    call POST "/buy/poor$user/100" 422
else
    echo "   accounts are off here (GET /assets is $out)"
fi
say "a buy below the best ask rests"
call POST "/buy/$user/50?qty=2" 201
id=$(sed -n 's/.*"order":{"id":\([0-9]*\).*/\1/p' <<<"$body")
say "it is in the book (read-your-writes: wait for its seq)"
seq=$(field seq)
for _ in $(seq 1 50); do
    call GET /orderbook 200 >/dev/null
    [ "$(field seq)" -ge "$seq" ] && break
    sleep 0.1
done
grep -q "\"id\":$id" <<<"$body" || { echo "smoke.sh: order $id not in the book" >&2; exit 1; }
echo "   order $id is in the book at seq $(field seq)"
say "the order itself"
call GET "/orders/$id" 200
say "someone else may not cancel it"
call POST "/cancel/not$user/$id" 403
say "its owner may"
call POST "/cancel/$user/$id" 200
say "twice is 404"
call POST "/cancel/$user/$id" 404
say "bad input is a 400 with a message"
call POST "/buy/$user/0" 400
call POST "/buy/$user/100?qty=many" 400
say "a sell that crosses the best bid trades"
call POST "/sell/$user/1" 201
say "order types: an IOC that finds nothing is 409, a post-only order rests, amend, cancel-all"
call POST "/buy/$user/1?tif=ioc" 409
call POST "/buy/$user/2?qty=3&post_only=true" 201
id=$(sed -n 's/.*"order":{"id":\([0-9]*\).*/\1/p' <<<"$body")
call POST "/amend/$user/$id?qty=2" 200
call POST "/amend/$user/$id?qty=2" 409
call POST "/cancel-all/$user" 200
call POST "/cancel-all/$user" 409
say "the markets; an order in the last one listed, its book; an unknown market is 404"
call GET /markets 200
market=$(sed -n 's/.*"symbol":"\([A-Z0-9]*\)".*/\1/p' <<<"$body")
call POST "/markets/$market/buy/$user/1" 201
call GET "/markets/$market/orderbook?depth=3" 200
call GET "/markets/NOSUCHMARKET/orderbook" 404
say "recent trades and this user's orders"
call GET "/trades?limit=3" 200
call GET "/users/$user/orders" 200
if [ "$accounts" = yes ]; then
    say "balances, a withdrawal, and one beyond what is available"
    call GET "/users/$user/balances" 200
    first=$(head -n1 <<<"$assets")
    call POST "/withdraw/$user/$first/1" 200
    call POST "/withdraw/$user/$first/1000000000" 422
fi
say "metrics"
curl -fsS "$base/metrics" | grep -c '^foldbook_' | sed 's/^/   metric lines: /'
printf '\nsmoke.sh: all %d steps passed against %s\n' "$step" "$base"
