#!/usr/bin/env bash
# The agent's own cost (prints, never asserts). Run by `make bench` (scripts/bench.sh sets
# HOSTMANAGER_BIN to the release build).
#
# 1. Idle: the embedded default (examples/local/agent.toml, on free loopback ports) with the
#    sample app deployed; CPU as % of one core from /proc/<pid>/stat (utime + stime) over
#    BENCH_IDLE_SECONDS (default 60), and RSS (VmRSS). Targets: <= 0.1 % and <= 12 MiB.
# 2. Under log load: `status` latency p50/p99 over the control socket and the agent's peak RSS,
#    idle, while the tailer works through a BENCH_BACKLOG_MIB (default 1024) backlog appended
#    to a watched file, and while rotation compresses a log of that size; printed as ratios
#    against idle. BENCH_STATUS_SAMPLES (default 200) requests per phase.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${HOSTMANAGER_BIN:?run through make bench}"
idle_seconds="${BENCH_IDLE_SECONDS:-60}"
backlog_mib="${BENCH_BACKLOG_MIB:-1024}"
samples="${BENCH_STATUS_SAMPLES:-200}"
command -v curl >/dev/null || { echo "idle: needs curl (scripts/deps.sh demo)" >&2; exit 1; }

work="$(mktemp -d /tmp/hm-bench-idle.XXXXXX)"
chmod 755 "$work"
root="$work/root"
agent=""
cleanup() {
    if [ -n "$agent" ]; then
        kill "$agent" 2>/dev/null || true
        wait "$agent" 2>/dev/null || true
    fi
    "$bin" --root "$root" stop-apps >/dev/null 2>&1 || true
    rm -rf "$work" || true
}
trap cleanup EXIT
hm() { "$bin" --root "$root" "$@"; }
# Polls "$@" until it succeeds; gives up after 120 s so a broken setup cannot spin forever.
await() { local deadline=$(( $(date +%s) + 120 )); until "$@"; do [ "$(date +%s)" -lt "$deadline" ] || { echo "bench: gave up waiting for: $*" >&2; exit 1; }; sleep 0.1; done; }
idle() { hm status --json | python3 -c 'import json, sys; sys.exit(json.load(sys.stdin)["deployment"] is not None)'; }
ports=($(python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])'))

# Watched only (`logs.watch.files`, relative to the root): not rotated or published.
backlog="$root/var/log/bench/backlog.log"
mkdir -p "$root/etc/hostmanager" "$(dirname "$backlog")"
touch "$backlog"
sed -e "s/^port = 18500/port = ${ports[0]}/" \
    -e "s/^alternate_port = 18501/alternate_port = ${ports[1]}/" \
    -e "s/127.0.0.1:18080/127.0.0.1:${ports[2]}/" \
    examples/local/agent.toml > "$root/etc/hostmanager/agent.toml"
python3 - "$root/etc/hostmanager/agent.toml" "/var/log/bench/backlog.log" <<'PY'
import sys
path, backlog = sys.argv[1], sys.argv[2]
text = open(path).read()
if "[logs.watch]" in text:
    text = text.replace("[logs.watch]", f'[logs.watch]\nfiles = ["{backlog}"]', 1)
else:
    text += f'\n[logs.watch]\nfiles = ["{backlog}"]\n'
open(path, "w").write(text)
PY
if [ "$(id -u)" -eq 0 ] && ! id webapp >/dev/null 2>&1; then useradd --system --no-create-home --shell /usr/sbin/nologin webapp; fi
hm validate >/dev/null
# The binary itself, not through `hm`: a backgrounded function is a subshell, and $! would
# be its pid (the numbers below must be the agent's, and so must the kill in cleanup).
"$bin" --root "$root" run >/dev/null 2>"$work/agent.log" & agent=$!
await hm status >/dev/null 2>&1
hm deploy examples/sample-app --wait >/dev/null
await idle

ticks_per_second=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$agent/status"; }
# Let the deployment's aftermath (health gate, first windows) pass before measuring.
sleep 5
before=$(cpu_ticks)
sleep "$idle_seconds"
after=$(cpu_ticks)
idle_rss=$(rss_kib)
cpu_percent=$(awk "BEGIN {printf \"%.3f\", ($after - $before) / $ticks_per_second / $idle_seconds * 100}")
echo "idle over ${idle_seconds} s (sample app deployed, embedded default):"
echo "  CPU: ${cpu_percent} % of a core   (target <= 0.1 %; $((after - before)) ticks of 1/${ticks_per_second} s)"
echo "  RSS: $(awk "BEGIN {printf \"%.1f\", $idle_rss / 1024}") MiB   (target <= 12 MiB)"

socket="$root/run/hostmanager/control.sock"
# Prints "p50_ms p99_ms peak_rss_kib" of $samples status requests.
measure() {
    local peak=0 rss
    : > "$work/latencies"
    for _ in $(seq "$samples"); do
        curl -s -o /dev/null -w '%{time_total}\n' --unix-socket "$socket" http://agent/v1/status >> "$work/latencies"
        rss=$(rss_kib); [ "$rss" -gt "$peak" ] && peak=$rss
    done
    sort -n "$work/latencies" | awk -v peak="$peak" '{a[NR]=$1*1000} END {
        p50=a[int(NR*0.50 + 0.5)]; p99=a[int(NR*0.99 + 0.5)]; if (p99 == "") p99=a[NR];
        printf "%.2f %.2f %d\n", p50, p99, peak }'
}
line() { # name p50 p99 rss, idle p50 p99 rss
    awk -v n="$1" -v a="$2" -v b="$3" -v c="$4" -v ia="$5" -v ib="$6" -v ic="$7" 'BEGIN {
        printf "  %-34s p50 %7.2f ms (%5.2fx)  p99 %7.2f ms (%5.2fx)  peak RSS %6.1f MiB (%5.2fx)\n",
            n, a, a/ia, b, b/ib, c/1024, c/ic }'
}
# A line-structured backlog: 1 MiB of log lines, appended $1 times to $2.
append_backlog() {
    python3 - "$1" "$2" <<'PY'
import sys
count, path = int(sys.argv[1]), sys.argv[2]
block = b"".join(b"2026-01-01T00:00:00Z INFO request %07d served in 3 ms by worker 4\n" % n for n in range(15000))
block = (block * 2)[: 1 << 20]
block = block[: block.rfind(b"\n") + 1]
with open(path, "ab") as out:
    for _ in range(count):
        out.write(block)
PY
}

read -r i50 i99 irss < <(measure)
echo "status over the control socket (${samples} requests per phase), against idle:"
line "idle" "$i50" "$i99" "$irss" "$i50" "$i99" "$irss"

append_backlog "$backlog_mib" "$backlog"
read -r t50 t99 trss < <(measure)
line "tailer, ${backlog_mib} MiB backlog" "$t50" "$t99" "$trss" "$i50" "$i99" "$irss"

# Rotation: a log of the same size in var/log (rotated and watched), rotated now.
append_backlog "$backlog_mib" "$root/var/log/web.stdout.log"
hm logs rotate >/dev/null &
rotating=$!
read -r r50 r99 rrss < <(measure)
wait "$rotating" || true
line "rotation of ${backlog_mib} MiB" "$r50" "$r99" "$rrss" "$i50" "$i99" "$irss"
echo "(the rotated log is also watched: its tailing is part of the rotation phase)"
