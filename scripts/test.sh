#!/usr/bin/env bash
# Runs every test on a fresh machine, installing what the tests need when it is
# missing: the Rust workspace's tests, then the deployment checks (which install
# Debian's docker-compose and systemd when missing).
#
#   scripts/test.sh            all tests
#   scripts/test.sh -- NAME    extra arguments go to `cargo test` (e.g. a test name filter)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo is not installed; install Rust from https://rustup.rs first" >&2
    exit 1
fi

# The black-box tests start the real binaries, so build all of them first.
cargo build --locked --workspace --bins
cargo test --locked --workspace "$@"
scripts/check-deploy.sh
