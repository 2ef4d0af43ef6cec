#!/usr/bin/env bash
# Log publication benchmark (prints, never asserts). Run by `make bench` (scripts/bench.sh sets
# HOSTMANAGER_BIN to the release build).
#
# 1. Throughput: 1 GiB of rotated logs (100 files of ~10 MiB, Elastic Beanstalk's rotation size)
#    compressed and uploaded to one moto_server by hostmanager (`logs publish-dir`: the agent's
#    gzip + create-only upload + ETag check) and by `gzip` + `aws s3 cp --recursive` (awscli
#    from PyPI); MiB of raw logs per second and the ratio (target >= 0.8x).
# 2. Latency: a severe line appended to a watched file -> the event in the journal, measured
#    with the journal's own timestamp (target <= 100 ms).
#
# BENCH_LOG_MIB (default 1024) and BENCH_LATENCY_SAMPLES (default 20) scale it down.
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir="$PWD"
bin="${HOSTMANAGER_BIN:-$root_dir/target/release/hostmanager}"
total_mib="${BENCH_LOG_MIB:-1024}"
samples="${BENCH_LATENCY_SAMPLES:-20}"
[ -x "$bin" ] || { echo "log_publish: build first (make bench does): $bin" >&2; exit 1; }

# moto_server and awscli in the repository's venv, resolved together so their botocore agrees.
if [ ! -x .venv/bin/aws ] || [ ! -x .venv/bin/moto_server ]; then
    echo "log_publish: installing moto[server] and awscli into .venv"
    [ -d .venv ] || python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5.1,<6' awscli
fi

work="$(mktemp -d /tmp/hm-bench-logs.XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="$(free_port)"
.venv/bin/moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
pids+=($!)
endpoint="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -fsS "$endpoint/" >/dev/null 2>&1 && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
aws() { "$root_dir/.venv/bin/aws" --endpoint-url "$endpoint" "$@"; }

# Rotated logs: access-log-like lines with varying fields, ~10 MiB per file.
files=$(( (total_mib + 9) / 10 ))
mkdir -p "$work/logs"
python3 - "$work/logs/template.log" <<'PY'
import random, sys
random.seed(7)
paths = ["/", "/api/orders", "/api/users", "/health", "/static/app.js", "/login"]
agents = ["curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64)", "ELB-HealthChecker/2.0"]
with open(sys.argv[1], "w") as out:
    size = 0
    n = 0
    while size < 10 * 1024 * 1024:
        line = (f'10.0.{random.randint(0, 255)}.{random.randint(1, 254)} - - '
                f'[23/Nov/2026:10:{n // 6000 % 60:02}:{n // 100 % 60:02} +0000] '
                f'"GET {random.choice(paths)}?id={random.randint(1, 10**6)} HTTP/1.1" '
                f'{random.choice([200, 200, 200, 304, 404, 500])} {random.randint(100, 90000)} '
                f'"-" "{random.choice(agents)}" {random.random():.3f}\n')
        out.write(line)
        size += len(line)
        n += 1
PY
for i in $(seq -w 1 "$files"); do cp "$work/logs/template.log" "$work/logs/web.stdout.log.$i"; done
rm "$work/logs/template.log"
raw_mib=$(du -sm "$work/logs" | cut -f1)
echo "log_publish: $files files, $raw_mib MiB of rotated logs, moto_server at $endpoint"

# hostmanager
aws s3 mb s3://hm-bench >/dev/null
cat > "$work/agent.toml" <<EOF
[aws]
endpoint_url = "$endpoint"
region = "us-east-1"
[logs.publish]
concurrency = 8
EOF
hm_json="$("$bin" --root "$work/root" --config "$work/agent.toml" logs publish-dir "$work/logs" --destination s3://hm-bench)"
hm_seconds=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["seconds"])' "$hm_json")

# gzip + aws s3 cp
aws s3 mb s3://peer-bench >/dev/null
mkdir -p "$work/peer"
cp "$work/logs"/* "$work/peer/"
start=$(date +%s.%N)
gzip -6 "$work/peer"/*
aws s3 cp --recursive --quiet "$work/peer" s3://peer-bench/resources/environments/logs/publish/e-bench/i-bench/
end=$(date +%s.%N)
peer_seconds=$(python3 -c "print($end - $start)")
rm -rf "$work/peer"

python3 - "$raw_mib" "$hm_seconds" "$peer_seconds" <<'PY'
import sys
mib, hm, peer = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"publication throughput: hostmanager {mib / hm:7.1f} MiB/s ({hm:.1f} s)")
print(f"                        gzip + aws s3 cp {mib / peer:7.1f} MiB/s ({peer:.1f} s)")
print(f"                        ratio {peer / hm:.2f}x (target >= 0.8x)")
PY

# Latency: severe line -> event.
root="$work/agent"
mkdir -p "$root/etc/hostmanager" "$root/var/log/app"
cat > "$root/etc/hostmanager/agent.toml" <<EOF
[environment]
instance_id = "i-bench"
[app]
port = $(free_port)
alternate_port = $(free_port)
[proxy]
enabled = false
[logs.watch]
files = ["var/log/app/*.log"]
max_events_per_minute = 100000
EOF
"$bin" --root "$root" run 2>"$work/agent.log" &
pids+=($!)
for _ in $(seq 100); do "$bin" --root "$root" status >/dev/null 2>&1 && break; sleep 0.1; done
: > "$root/var/log/app/bench.log"
sleep 1.5   # the agent discovers the new file (a 1 s scan) before the first sample
latencies=()
words=(alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango)
last=$("$bin" --root "$root" events --json --limit 1 | python3 -c 'import json,sys; e=json.load(sys.stdin); print(e[-1]["id"] if e else 0)')
for i in $(seq 1 "$samples"); do
    word="${words[$(( (i - 1) % ${#words[@]} ))]}-${words[$(( (i - 1) / ${#words[@]} % ${#words[@]} ))]}"
    sent=$(date +%s%3N)
    echo "FATAL bench sample $word" >> "$root/var/log/app/bench.log"
    event=""
    for _ in $(seq 500); do
        event=$("$bin" --root "$root" events --json --after "$last" --severity error | python3 -c 'import json,sys; e=json.load(sys.stdin); print("%d %d" % (e[0]["id"], e[0]["time_ms"]) if e else "")')
        [ -n "$event" ] && break
        sleep 0.01
    done
    [ -n "$event" ] || { echo "log_publish: no event for sample $i" >&2; break; }
    last=${event% *}
    latencies+=($(( ${event#* } - sent )))
done
python3 - "${latencies[@]}" <<'PY'
import statistics, sys
values = sorted(int(v) for v in sys.argv[1:])
if values:
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    print(f"severe line -> event: median {statistics.median(values):.0f} ms, p95 {p95} ms, max {values[-1]} ms over {len(values)} samples (target <= 100 ms)")
PY
