#!/usr/bin/env bash
# `make bench`: every benchmark in benches/*.sh, each printing hostmanager's number beside a
# peer's run on this same machine and the ratio. Benchmarks print; they never assert.
set -euo pipefail
cd "$(dirname "$0")/.."
# The whole workspace: benches/controller.sh runs the controller and crates/loadgen too.
cargo build --locked --release --quiet --workspace
export HOSTMANAGER_BIN="$PWD/target/release/hostmanager"
status=0
for bench in benches/*.sh; do
    [ -e "$bench" ] || continue
    echo "=== $bench"
    bash "$bench" || { echo "benchmark $bench failed" >&2; status=1; }
done
exit $status
