#!/usr/bin/env bash
# Validates deploy/ on a machine without a Docker engine: the compose file (every
# profile, via `docker-compose config`, and the nats profile's cluster config), the systemd units (`systemd-analyze verify`
# and an offline security score, in a throw-away root with stub binaries, so nothing
# is written outside a temp dir), a lint of the Dockerfile and its build context, and
# the container health probe against a local HTTP server.
# Installs docker-compose / systemd / python3-yaml from Debian when missing (as root).
#
#   scripts/check-deploy.sh        exits non-zero when any check fails
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

passed=0 failed=0
pass() { echo "  ok    $1"; passed=$((passed + 1)); }
fail() { echo "  FAIL  $1"; failed=$((failed + 1)); }
# indent TEXT: TEXT with every line indented under its check.
indent() { while IFS= read -r line; do printf '        %s\n' "$line"; done <<<"$1"; }
# check DESCRIPTION COMMAND...: passes when COMMAND exits 0; shows its output if not.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then pass "$what"; else fail "$what"; [[ -z $out ]] || indent "$out"; fi
}
# check_quiet: like check, but any output (a warning) is a failure too.
check_quiet() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1) && [[ -z $out ]]; then pass "$what"; else fail "$what"; indent "$out"; fi
}
section() { echo; echo "== $1"; }

apt_updated=
# apt_install PACKAGE: root, non-interactive, without recommends (docker-compose would
# otherwise pull in the whole docker.io engine).
apt_install() {
    if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "  missing: install the Debian package $1 (as root)" >&2
        return 1
    fi
    echo "  installing $1 (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z $apt_updated ]]; then apt-get update -qq >/dev/null || return 1; apt_updated=1; fi
    apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}
# ensure COMMAND PACKAGE: install the Debian package when the command is missing.
ensure() { command -v "$1" >/dev/null 2>&1 || apt_install "$2"; }

tmp=$(mktemp -d)
server_pid=
cleanup() { [[ -z $server_pid ]] || kill "$server_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

DF=deploy/Dockerfile
UNITS=(foldbook-command foldbook-query foldbook-gateway)

section "files"
for f in deploy/README.md $DF deploy/Dockerfile.dockerignore deploy/compose.yaml \
    deploy/healthcheck.sh deploy/nats/cluster.conf "${UNITS[@]/#/deploy/systemd/}"; do
    [[ $f == *systemd/* ]] && f+=.service
    check "$f exists" test -s "$f"
done
check "deploy/healthcheck.sh is executable" test -x deploy/healthcheck.sh
check "bash -n deploy/healthcheck.sh" bash -n deploy/healthcheck.sh
check "bash -n scripts/check-deploy.sh" bash -n scripts/check-deploy.sh

section "Dockerfile (lint)"
# Continuation lines joined, comments dropped.
sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta' "$DF" | grep -v '^[[:space:]]*#' >"$tmp/Dockerfile"
last_stage=$(awk '/^FROM /{n=NR} END{print n}' "$tmp/Dockerfile")
final=$(sed -n "${last_stage}p" "$tmp/Dockerfile")
arg_default() { sed -n "s/^ARG $1=//p" "$tmp/Dockerfile" | head -1; }
final_image=$(awk '{print $2}' <<<"$final")
# shellcheck disable=SC2016 # a literal ${...} in the Dockerfile
[[ $final_image == '${'*'}' ]] && final_image=$(arg_default "$(tr -d '${}' <<<"$final_image")")
builder=$(grep -m1 -E '^FROM .* AS builder$' "$tmp/Dockerfile" | awk '{print $2}')
# shellcheck disable=SC2016 # a literal ${...} in the Dockerfile
[[ $builder == '${'*'}' ]] && builder=$(arg_default "$(tr -d '${}' <<<"$builder")")
check "first line is a BuildKit syntax directive" grep -qx '# syntax=docker/dockerfile:1' <(head -1 "$DF")
check "multi-stage: >= 2 FROM lines" test "$(grep -c '^FROM ' "$tmp/Dockerfile")" -ge 2
check "builder stage from an official rust image ($builder)" grep -qE '^rust:[0-9.]+-[a-z]+$' <<<"$builder"
check "runtime stage is debian slim ($final_image)" grep -qE '^debian:[a-z]+-slim$' <<<"$final_image"
check "cargo build --release --locked of the three service binaries" \
    grep -qE 'cargo build .*--release.*--locked.*-p gateway -p command-svc -p query-svc --bins' "$tmp/Dockerfile"
check "the three binaries are copied from the builder" grep -qE '^COPY --from=builder ' "$tmp/Dockerfile"
check "build output copies gateway, command-svc, query-svc" grep -q 'for bin in gateway command-svc query-svc' "$tmp/Dockerfile"
user=$(tail -n +"$last_stage" "$tmp/Dockerfile" | sed -n 's/^USER //p' | tail -1)
check "runtime runs as a non-root USER ($user)" grep -qvE '^(|root|0)(:.*)?$' <<<"$user"
check "WORKDIR /var/lib/foldbook" grep -qx 'WORKDIR /var/lib/foldbook' "$tmp/Dockerfile"
check "VOLUME /var/lib/foldbook" grep -qE '^VOLUME \["/var/lib/foldbook"\]' "$tmp/Dockerfile"
check "EXPOSE 8080 8081 8082" grep -qx 'EXPOSE 8080 8081 8082' "$tmp/Dockerfile"
check "HEALTHCHECK uses the bundled probe" grep -qE '^HEALTHCHECK .*CMD \["foldbook-healthcheck"' "$tmp/Dockerfile"
check "init.txt is installed under the volume" grep -qE '^COPY .*init\.txt /var/lib/foldbook/init\.txt$' "$tmp/Dockerfile"
check "CMD is exec form: gateway on 0.0.0.0:8080, files under the volume" \
    grep -qE '^CMD \["gateway", *"--listen", *"0\.0\.0\.0:8080", *"--init", *"/var/lib/foldbook/init\.txt", *"--log", *"/var/lib/foldbook/log\.txt"\]' "$tmp/Dockerfile"
check "no ADD, no :latest tags, no sudo" bash -c "! grep -qE '^ADD |:latest|sudo ' '$tmp/Dockerfile'"
# Every file COPY'd from the context exists and is let through by the .dockerignore
# whitelist (a `!path` line for it or for its top-level directory).
copy_ok() {
    local src bad=0
    # shellcheck disable=SC2013 # COPY sources are words, split on purpose
    for src in $(grep -E '^COPY ' "$tmp/Dockerfile" | grep -v -- '--from=' |
        sed -E 's/^COPY( --[a-z]+=[^ ]+)* //' | awk '{NF--; print}'); do
        [[ $src == ./ ]] && continue
        [[ -e $src ]] || { echo "COPY source $src does not exist"; bad=1; }
        grep -qxF -e "!$src" -e "!${src%%/*}" deploy/Dockerfile.dockerignore ||
            { echo "COPY source $src is excluded by deploy/Dockerfile.dockerignore"; bad=1; }
    done
    return $bad
}
check "COPY sources exist and are in the build-context whitelist" copy_ok
# shellcheck disable=SC2016 # the script is for bash -c, expanded there
check ".dockerignore keeps target/, log.txt, snapshots/ out" \
    bash -c 'for p in "**/target" "**/log.txt" "**/snapshots"; do grep -qxF "$p" deploy/Dockerfile.dockerignore || exit 1; done'

section "health probe (deploy/healthcheck.sh against a local HTTP server)"
py=python3
command -v python3 >/dev/null 2>&1 || py=/usr/bin/python3
if ensure "$py" python3; then
    cat >"$tmp/server.py" <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = {"/health": 200}.get(self.path, 503)
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.end_headers(); self.wfile.write(b'{"status":"x"}')
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_address[1]))
s.serve_forever()
PY
    "$py" "$tmp/server.py" "$tmp/port" 2>/dev/null &
    server_pid=$!
    for _ in $(seq 50); do [[ -s $tmp/port ]] && break; sleep 0.1; done
    port=$(cat "$tmp/port" 2>/dev/null)
    check "200 on /health -> healthy (port $port)" deploy/healthcheck.sh "$port"
    check "HOST:PORT form" deploy/healthcheck.sh "127.0.0.1:$port"
    check "wildcard 0.0.0.0:PORT probes loopback" deploy/healthcheck.sh "0.0.0.0:$port"
    kill "$server_pid"; wait "$server_pid" 2>/dev/null; server_pid=
    check "nothing listening -> unhealthy" bash -c "! deploy/healthcheck.sh '$port'"
    sed -i 's/{"\/health": 200}/{"\/health": 503}/' "$tmp/server.py"
    rm -f "$tmp/port"; "$py" "$tmp/server.py" "$tmp/port" 2>/dev/null &
    server_pid=$!
    for _ in $(seq 50); do [[ -s $tmp/port ]] && break; sleep 0.1; done
    check "503 on /health -> unhealthy" bash -c "! deploy/healthcheck.sh '$(cat "$tmp/port")'"
    kill "$server_pid"; wait "$server_pid" 2>/dev/null; server_pid=
else
    fail "python3 needed for the probe test"
fi

section "compose (deploy/compose.yaml)"
compose=()
if command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif ensure docker-compose docker-compose; then
    compose=(docker-compose)
fi
# A python with PyYAML to read the resolved config (docker-compose's own python has it).
ypy=
for p in /usr/bin/python3 python3; do "$p" -c 'import yaml' 2>/dev/null && { ypy=$p; break; }; done
[[ -n $ypy ]] || { apt_install python3-yaml && ypy=/usr/bin/python3; }
if [[ ${#compose[@]} -eq 0 ]]; then
    fail "docker-compose is not available"
else
    echo "  using: ${compose[*]} ($("${compose[@]}" version --short 2>/dev/null || echo '?'))"
    cat >"$tmp/compose_check.py" <<'PY'
import sys, yaml
path, profile, expected, root = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4]
cfg = yaml.safe_load(open(path))
svcs = {n: s for n, s in cfg["services"].items() if profile in s.get("profiles", [])}
def t(ok, what): print(("PASS " if ok else "FAIL ") + what)
t(sorted(svcs) == sorted(expected), f"exactly the services {expected} (got {sorted(svcs)})")
def mounts(s):
    out = []
    for v in s.get("volumes", []):
        if isinstance(v, str):
            src, dst = v.split(":")[:2]
        else:
            src, dst = v.get("source"), v.get("target")
        out.append((src, dst))
    return out
for n, s in svcs.items():
    cmd = s.get("command", [])
    listen = cmd[cmd.index("--listen") + 1] if "--listen" in cmd else ""
    b = s.get("build", {})
    t(b.get("context") == root and b.get("dockerfile") == "deploy/Dockerfile",
      f"{n}: built from deploy/Dockerfile, context = repo root")
    t(s.get("restart") == "unless-stopped", f"{n}: restart unless-stopped")
    t(listen.startswith("0.0.0.0:"), f"{n}: listens on 0.0.0.0 ({listen})")
    if n in ("gateway", "command-svc", "query-svc"):
        t(cmd[0] == n and "/var/lib/foldbook/log.txt" in cmd and "/var/lib/foldbook/init.txt" in cmd,
          f"{n}: runs {n} with --init/--log under /var/lib/foldbook")
        t(any(d == "/var/lib/foldbook" for _, d in mounts(s)), f"{n}: named volume at /var/lib/foldbook")
    if n == "gateway-proxy":
        t(cmd[0] == "gateway" and cmd[cmd.index("--command-url") + 1] == "http://command-svc:8081"
          and cmd[cmd.index("--query-url") + 1] == "http://query-svc:8082",
          "gateway-proxy: --command-url http://command-svc:8081 --query-url http://query-svc:8082")
if profile == "split":
    vols = [dict((d, s_) for s_, d in mounts(svcs[n])).get("/var/lib/foldbook") for n in ("command-svc", "query-svc")]
    t(vols[0] is not None and vols[0] == vols[1], f"command-svc and query-svc share one volume ({vols})")
writers = [n for n in svcs if n in ("gateway", "command-svc")]
t(len(writers) == 1, f"exactly one log writer ({writers})")
PY
    # The nats profile: a 3-node JetStream cluster (the official image, the config in
    # deploy/nats/cluster.conf) and foldbook's services on an R3 stream.
    cat >"$tmp/nats_check.py" <<'PY'
import sys, yaml
path, root = sys.argv[1], sys.argv[2]
cfg = yaml.safe_load(open(path))
svcs = {n: s for n, s in cfg["services"].items() if "nats" in s.get("profiles", [])}
def t(ok, what): print(("PASS " if ok else "FAIL ") + what)
nodes = ["nats-1", "nats-2", "nats-3"]
ours = ["nats-command-svc", "nats-gateway", "nats-query-svc-1", "nats-query-svc-2"]
t(sorted(svcs) == sorted(nodes + ours), f"exactly the services {nodes + ours} (got {sorted(svcs)})")
def arg(cmd, flag):
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == flag and i + 1 < len(cmd)]
def mounts(s):
    out = []
    for v in s.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            out.append((parts[0], parts[1]))
        else:
            out.append((v.get("source"), v.get("target")))
    return out
conf = open(root + "/deploy/nats/cluster.conf").read()
t("sync_interval: always" in conf, "cluster.conf: jetstream sync_interval: always")
t(all(f"nats-route://{n}:6222" in conf for n in nodes), "cluster.conf: routes to all three nodes")
for n in nodes:
    s = svcs.get(n, {})
    cmd = s.get("command", [])
    t(str(s.get("image", "")).startswith("nats:2."), f"{n}: the official nats 2.x image ({s.get('image')})")
    t(arg(cmd, "--name") == [n] and arg(cmd, "-c") == ["/etc/nats/cluster.conf"], f"{n}: -c cluster.conf --name {n}")
    m = dict((d, src) for src, d in mounts(s))
    t("/data" in m and "/etc/nats/cluster.conf" in m, f"{n}: its own /data volume and the config mounted")
    t(s.get("restart") == "unless-stopped", f"{n}: restart unless-stopped")
data = [dict((d, src) for src, d in mounts(svcs.get(n, {}))).get("/data") for n in nodes]
t(len(set(data)) == 3, f"each node has its own data volume ({data})")
url = "nats://nats-1:4222,nats-2:4222,nats-3:4222/foldbook"
for n in ours:
    s = svcs.get(n, {})
    cmd = s.get("command", [])
    b = s.get("build", {})
    t(b.get("context") == root and b.get("dockerfile") == "deploy/Dockerfile", f"{n}: built from deploy/Dockerfile")
    t(s.get("restart") == "unless-stopped", f"{n}: restart unless-stopped")
    t(any(l.startswith("0.0.0.0:") for l in arg(cmd, "--listen")), f"{n}: listens on 0.0.0.0")
    if n != "nats-gateway":
        t(arg(cmd, "--log") == [url], f"{n}: --log {url}")
writer = svcs.get("nats-command-svc", {}).get("command", [])
t(writer[:1] == ["command-svc"] and arg(writer, "--nats-replicas") == ["3"], "nats-command-svc: command-svc --nats-replicas 3")
writers = [n for n, s in svcs.items() if s.get("command", [""])[0] == "command-svc"
           or (s.get("command", [""])[0] == "gateway" and "--command-url" not in s.get("command", []))]
t(writers == ["nats-command-svc"], f"exactly one log writer ({writers})")
gw = svcs.get("nats-gateway", {}).get("command", [])
t(arg(gw, "--command-url") == ["http://nats-command-svc:8081"]
  and arg(gw, "--query-url") == ["http://nats-query-svc-1:8082", "http://nats-query-svc-2:8082"],
  "nats-gateway: proxies to nats-command-svc and both query replicas")
vols = [dict((d, src) for src, d in mounts(svcs.get(n, {}))).get("/var/lib/foldbook") for n in ("nats-command-svc", "nats-query-svc-1", "nats-query-svc-2")]
t(None not in vols and len(set(vols)) == 3, f"each foldbook service keeps its own snapshots ({vols})")
PY
    declare -A expect=([combined]="gateway" [split]="command-svc gateway-proxy query-svc"
        [nats]="nats-1 nats-2 nats-3 nats-command-svc nats-query-svc-1 nats-query-svc-2 nats-gateway")
    for profile in combined split nats; do
        out=$tmp/config-$profile.yaml
        "${compose[@]}" -f deploy/compose.yaml --profile "$profile" config >"$out" 2>"$tmp/err"
        rc=$?
        if [[ $rc -eq 0 ]]; then
            pass "${compose[*]} --profile $profile config: exit 0"
        else
            fail "${compose[*]} --profile $profile config: exit $rc"; sed 's/^/        /' "$tmp/err"
            continue
        fi
        for svc in ${expect[$profile]}; do
            check "--profile $profile: service $svc in the config" grep -qE "^  $svc:" "$out"
        done
        if [[ -z $ypy ]]; then fail "PyYAML needed to check the $profile config"; continue; fi
        # Structure of the resolved config. docker-compose 1.x prints every service
        # (profiles included), v2 only the active ones: select by `profiles` either way.
        if [[ $profile == nats ]]; then
            "$ypy" "$tmp/nats_check.py" "$out" "$PWD" >"$tmp/struct" 2>&1 ||
                echo "FAIL structure check crashed" >>"$tmp/struct"
        else
            "$ypy" "$tmp/compose_check.py" "$out" "$profile" "${expect[$profile]}" "$PWD" >"$tmp/struct" 2>&1 ||
                echo "FAIL structure check crashed" >>"$tmp/struct"
        fi
        while IFS= read -r line; do
            case $line in PASS*) pass "--profile $profile: ${line#PASS }" ;; *) fail "--profile $profile: ${line#FAIL }" ;; esac
        done <"$tmp/struct"
    done
fi

section "systemd units (deploy/systemd)"
if ensure systemd-analyze systemd; then
    # A throw-away root: the distribution's units, ours, and stub binaries at the
    # ExecStart paths, so `verify` checks everything without touching /usr/local/bin.
    root=$tmp/root
    mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/usr/local/bin"
    cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
    cp deploy/systemd/*.service "$root/etc/systemd/system/"
    for bin in gateway command-svc query-svc; do
        printf '#!/bin/sh\nexit 0\n' >"$root/usr/local/bin/$bin"
        chmod +x "$root/usr/local/bin/$bin"
    done
    for u in "${UNITS[@]}"; do
        check_quiet "systemd-analyze verify $u.service (no warnings)" \
            systemd-analyze verify --man=no --root="$root" "$u.service"
    done
    # The combined-mode drop-in documented in foldbook-gateway.service's comments.
    mkdir -p "$root/etc/systemd/system/foldbook-gateway.service.d"
    sed -n '/^#     \[Service\]/,/^#   systemctl restart/{s/^#     //p}' deploy/systemd/foldbook-gateway.service \
        >"$root/etc/systemd/system/foldbook-gateway.service.d/combined.conf"
    check "combined-mode drop-in documented in foldbook-gateway.service is present" \
        grep -q '^UnsetEnvironment=GATEWAY_COMMAND_URL GATEWAY_QUERY_URL$' "$root/etc/systemd/system/foldbook-gateway.service.d/combined.conf"
    check_quiet "systemd-analyze verify foldbook-gateway.service + combined drop-in" \
        systemd-analyze verify --man=no --root="$root" foldbook-gateway.service
    rm -r "$root/etc/systemd/system/foldbook-gateway.service.d"
    if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
        for u in "${UNITS[@]}"; do
            score=$(systemd-analyze security --offline=yes --root="$root" --no-pager "$u.service" 2>/dev/null |
                sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
            check "systemd-analyze security $u.service: exposure $score <= 2.0" \
                systemd-analyze security --offline=yes --threshold=20 --root="$root" --no-pager "$u.service"
        done
    else
        echo "  (systemd-analyze security --offline not supported here: skipped)"
    fi
else
    fail "systemd-analyze is not available"
fi
required=(User=foldbook StateDirectory=foldbook WorkingDirectory=/var/lib/foldbook NoNewPrivileges=yes
    ProtectSystem=strict ProtectHome=yes PrivateTmp=yes PrivateDevices=yes ProtectKernelTunables=yes
    ProtectKernelModules=yes ProtectKernelLogs=yes ProtectControlGroups=yes
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" RestrictNamespaces=yes LockPersonality=yes
    MemoryDenyWriteExecute=yes SystemCallArchitectures=native CapabilityBoundingSet=
    Restart=on-failure KillSignal=SIGTERM TimeoutStopSec=20)
declare -A unit_env=(
    [foldbook-command]="COMMAND_LISTEN= FOLDBOOK_INIT= FOLDBOOK_LOG= FOLDBOOK_FSYNC= ExecStart=/usr/local/bin/command-svc"
    [foldbook-query]="QUERY_LISTEN= FOLDBOOK_INIT= FOLDBOOK_LOG= ExecStart=/usr/local/bin/query-svc"
    [foldbook-gateway]="GATEWAY_LISTEN= GATEWAY_COMMAND_URL=http://127.0.0.1:8081 GATEWAY_QUERY_URL=http://127.0.0.1:8082 ExecStart=/usr/local/bin/gateway"
)
for u in "${UNITS[@]}"; do
    f=deploy/systemd/$u.service
    missing=()
    for key in "${required[@]}"; do grep -qxF "$key" "$f" || missing+=("$key"); done
    for key in ${unit_env[$u]}; do
        grep -qE "^(Environment=)?${key//./\\.}" "$f" || missing+=("$key")
    done
    check "$u.service has the hardening, user, state dir and settings" \
        bash -c '[[ $# -eq 0 ]] || { echo "missing: $*"; exit 1; }' _ "${missing[@]}"
done

echo
echo "deploy: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
