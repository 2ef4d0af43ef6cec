#!/usr/bin/env bash
# Access-log aggregation throughput on a generated healthd log (10 M lines by default):
#   hostmanager's aggregator (`hostmanager metrics aggregate`, the agent's own parser and
#   windows: counts per status class + 8 latency percentiles per 10 s window),
#   goaccess (Debian's package) on the same file with the equivalent log format,
#   `wc -l`, the read-bandwidth floor.
# Prints lines/s for each and the ratios; never asserts. The file is read once beforehand so
# every tool reads from the page cache.
#   BENCH_LINES=1000000 bash benches/access_log.sh   # a quicker run
set -euo pipefail
cd "$(dirname "$0")/.."

lines="${BENCH_LINES:-10000000}"
bin="${HOSTMANAGER_BIN:-target/release/hostmanager}"
[ -x "$bin" ] || cargo build --locked --release --quiet

if ! command -v goaccess >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
    echo "access_log: installing goaccess"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends goaccess >/dev/null
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/hm-bench-access-log.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log="$work/application.log.2026-11-22-14"

# A realistic healthd log: ~1500 requests/s, a status mix with 4xx and 5xx, 95 % of the
# latencies under 200 ms and a tail up to 3 s, an X-Forwarded-For per line.
echo "generating $lines healthd lines..."
awk -v n="$lines" 'BEGIN {
    srand(42); t = 1763820000
    split("200 200 200 200 200 200 201 204 301 302 304 400 404 404 499 500 502 503", codes, " ")
    for (i = 0; i < n; i++) {
        t += 0.0004 + rand() * 0.0006
        lat = rand() < 0.95 ? rand() * 0.2 : rand() * 3
        printf "%.3f\"/api/items/%d\"%s\"%.3f\"%.3f\"10.0.%d.%d\n", t, i % 5000, codes[int(rand() * 18) + 1], lat, lat, i % 256, i % 199
    }
}' > "$log"
bytes=$(stat -c %s "$log")
cat "$log" > /dev/null

# Seconds (float) a command takes; its output goes to $work/out.
timed() {
    local start end
    start=$(date +%s.%N)
    "$@" > "$work/out" 2>"$work/err"
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.6f", b - a }'
}

wc_s=$(timed wc -l "$log")
hm_s=$(timed "$bin" metrics aggregate --quiet --window 10s "$log")
hm_summary=$(tail -1 "$work/out")
# The healthd format with goaccess's specifiers: $msec as an epoch (%x, the milliseconds
# skipped), $uri, $status, $request_time (%T, seconds), upstream time skipped, X-Forwarded-For
# as the client (goaccess needs one).
ga_s=$(timed goaccess "$log" --no-progress --log-format='%x.%^"%U"%s"%T"%^"%h' \
    --datetime-format='%s' -o "$work/report.json")
ga_valid=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['general']['valid_requests'])" "$work/report.json" 2>/dev/null || echo "?")

rate() { awk -v n="$lines" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf "file: %d lines, %d MB (page cache)\n" "$lines" $((bytes / 1000000))
printf "%-34s %8.3f s %14s lines/s\n" "wc -l (read floor)" "$wc_s" "$(rate "$wc_s")"
printf "%-34s %8.3f s %14s lines/s   [%s]\n" "hostmanager metrics aggregate" "$hm_s" "$(rate "$hm_s")" "$hm_summary"
printf "%-34s %8.3f s %14s lines/s   [%s valid requests]\n" "goaccess $(goaccess --version | head -1 | awk '{print $3}' | sed 's/\.$//')" "$ga_s" "$(rate "$ga_s")" "$ga_valid"
echo "hostmanager / goaccess: $(ratio "$ga_s" "$hm_s")x (target >= 10x)"
echo "hostmanager / wc -l:    $(ratio "$wc_s" "$hm_s")x (target >= 0.3x)"
