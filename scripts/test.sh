#!/usr/bin/env bash
# `make test`: installs what the suite needs, then runs it (lints first, as CI does).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh test
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --workspace --no-fail-fast
else
    cargo test --locked --workspace --no-fail-fast
fi
