#!/usr/bin/env bash
# `make fuzz`: every cargo-fuzz target under fuzz/ (`cargo fuzz list`) for FUZZ_SECONDS each
# (default 600), one after the other, then a table of what each did. Fails if any target
# crashes, hangs or fails its assertions; the crash's artifact path is in the output.
#   FUZZ_SECONDS=30 scripts/fuzz.sh         what CI runs (.ci/run)
#   scripts/fuzz.sh procfile cron_yaml      only these targets
# docs/fuzzing.md: the targets, one target by hand, minimising a crash.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-600}"

# cargo-fuzz needs nightly rustc flags. Use the nightly toolchain when there is one; CI's fresh
# machine may have only stable, which accepts them with RUSTC_BOOTSTRAP=1.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    cargo=(cargo +nightly)
else
    export RUSTC_BOOTSTRAP=1
    cargo=(cargo)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# No sanitizer: the workspace denies unsafe code, so AddressSanitizer has little to find, and
# it would instrument every crate again and slow every execution (docs/fuzzing.md). Panics,
# failed assertions, overflows (debug assertions are on), hangs and OOMs are what is caught.
flags=(--sanitizer none)

cd fuzz
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <("${cargo[@]}" fuzz list)
fi

start=$(date +%s)
"${cargo[@]}" fuzz build "${flags[@]}"
echo "fuzz: built ${#targets[@]} targets in $(($(date +%s) - start)) s"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
rows=()
failed=()
for target in "${targets[@]}"; do
    echo "=== fuzz $target (${seconds} s)"
    # New inputs go to a throwaway corpus (first directory); the committed seeds are only read.
    mkdir -p "$scratch/corpus-$target"
    log="$scratch/$target.log"
    status=0
    "${cargo[@]}" fuzz run "${flags[@]}" "$target" "$scratch/corpus-$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=20 -print_final_stats=1 >"$log" 2>&1 || status=$?
    # libFuzzer's final line: `#N DONE cov: C ft: F corp: … exec/s: E rss: …`; after a crash,
    # the last periodic stats line.
    stats=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1 || true)
    field() { sed -nE "s#.* $1: ([0-9]+).*#\1#p" <<<"$stats"; }
    execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$stats")
    rows+=("$(printf '%-18s %7s %10s %9s %7s %7s' "$target" "$seconds" "${execs:-?}" "$(field exec/s)" "$(field cov)" "$(field ft)")")
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        # What broke and where libFuzzer left the input (fuzz/artifacts/<target>/…).
        tail -n 40 "$log"
        grep -E 'Test unit written to|artifact_prefix' "$log" || true
    else
        grep -E '^#[0-9]+[[:space:]]+DONE' "$log" || tail -n 3 "$log"
    fi
done

echo
printf '%-18s %7s %10s %9s %7s %7s\n' target seconds execs exec/s cov ft
printf '%s\n' "${rows[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs under fuzz/artifacts/; docs/fuzzing.md says how to minimise one)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash, $(($(date +%s) - start)) s in all"
