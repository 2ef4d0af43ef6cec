#!/usr/bin/env bash
# Worker tier benchmark (prints, never asserts). Run by `make bench` (scripts/bench.sh sets
# HOSTMANAGER_BIN to the release build).
#
# The agent's SQS daemon next to a minimal peer (benches/worker_peer.py: boto3 threads that
# receive, POST through the same nginx and delete), both against one moto_server, one nginx and
# one trivial app on this machine, with the same number of connections:
# 1. Throughput: BENCH_WORKER_MESSAGES (default 500) messages queued before the consumer
#    starts; messages/s from the app's first request to the queue being empty (nothing waiting
#    or in flight: every message posted and deleted), and the ratio hostmanager/peer. Not more
#    by default: moto's ReceiveMessage scans the whole queue (1.3 s a call with 2000 waiting,
#    0.14 s with 200 here), so the run grows with the square of the count (2000 ran
#    past 15 minutes); the per-call cost also makes msg/s fall as the count grows.
# 2. Added latency: BENCH_WORKER_RATE (default 20) messages/s for BENCH_WORKER_LATENCY_SECONDS
#    (default 10), each body carrying its send time; the app records receive - send time;
#    p50/p99 for each.
# moto dominates both numbers (it is far slower than SQS), equally for both. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir="$PWD"
bin="${HOSTMANAGER_BIN:-$root_dir/target/release/hostmanager}"
messages="${BENCH_WORKER_MESSAGES:-500}"
rate="${BENCH_WORKER_RATE:-20}"
latency_seconds="${BENCH_WORKER_LATENCY_SECONDS:-10}"
connections="${BENCH_WORKER_CONNECTIONS:-10}"
[ -x "$bin" ] || { echo "worker: build first (make bench does): $bin" >&2; exit 1; }

# moto_server in the repository's venv; boto3 comes with it.
if [ ! -x .venv/bin/moto_server ]; then
    echo "worker: installing moto[server] into .venv"
    [ -d .venv ] || python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5.1,<6'
fi
py="$root_dir/.venv/bin/python"

work="$(mktemp -d /tmp/hm-bench-worker.XXXXXX)"
chmod 755 "$work"   # the app user and nginx's workers reach into the root
root="$work/root"
pids=()
agent=""
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    # The agent leaves the apps running when it shuts down (and refuses stop-apps meanwhile):
    # wait for it to exit, then stop the app and nginx without it.
    if [ -n "$agent" ]; then kill -TERM "$agent" 2>/dev/null || true; wait "$agent" 2>/dev/null || true; fi
    "$bin" --root "$root" stop-apps >/dev/null 2>&1 || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Polls "$@" until it succeeds; gives up after 60 s so a broken setup cannot spin forever.
await() { local deadline=$(( $(date +%s) + 60 )); until "$@"; do [ "$(date +%s)" -lt "$deadline" ] || { echo "worker: gave up waiting for: $*" >&2; exit 1; }; sleep 0.1; done; }
read -r -a ports <<< "$(python3 -c 'import socket
s=[socket.socket() for _ in range(4)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')"
endpoint="http://127.0.0.1:${ports[0]}"
proxy="http://127.0.0.1:${ports[1]}"
.venv/bin/moto_server -H 127.0.0.1 -p "${ports[0]}" >/dev/null 2>&1 &
pids+=("$!")
await curl -fs -o /dev/null "$endpoint/"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
helper() { AWS_ENDPOINT_URL="$endpoint" "$py" "$root_dir/benches/worker_peer.py" "$@"; }
hm_queue="$(helper create hm-bench)"
# The peer gets a fresh queue per phase: when the throughput peer exits, moto still runs its
# threads' abandoned long polls for up to 20 s, and on the same queue they would take (and
# hide for 30 s) messages of the latency phase.
peer_queue="$(helper create peer-throughput)"
peer_latency_queue="$(helper create peer-latency)"

# The trivial app: answers 200 to every POST and keeps, in memory, when the first and last
# came and (for bodies with a send time) receive - send in ms. /_bench/stats reads, and
# /_bench/reset clears them.
mkdir -p "$work/bundle"
echo "web: python3 application.py" > "$work/bundle/Procfile"
cat > "$work/bundle/application.py" <<'PY'
import json, os, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATS = {"count": 0, "first": None, "last": None, "latencies_ms": []}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        now = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            sent = json.loads(body).get("t")
        except ValueError:
            sent = None
        with LOCK:
            STATS["count"] += 1
            STATS["first"] = STATS["first"] or now
            STATS["last"] = now
            if sent:
                STATS["latencies_ms"].append((now - sent) * 1000)
        self.answer(b"ok\n")

    def do_GET(self):
        with LOCK:
            if self.path == "/_bench/reset":
                STATS.update(count=0, first=None, last=None, latencies_ms=[])
            self.answer(json.dumps(STATS).encode() if self.path.startswith("/_bench/") else b"ok\n")

    def answer(self, data):
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

# socketserver's listen backlog is 5: a burst of new connections would wait for SYN retries.
ThreadingHTTPServer.request_queue_size = 128
server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.daemon_threads = True
server.serve_forever()
PY

# An agent on a temporary root: worker tier on hm_queue, nginx on the proxy port.
# The app user, as the tests pick it: webapp when root (created if missing), else ourselves.
user="$(id -un)"
if [ "$(id -u)" -eq 0 ]; then
    user=webapp
    id webapp >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin webapp
fi
mkdir -p "$root/etc/hostmanager"
cat > "$root/etc/hostmanager/agent.toml" <<TOML
[environment]
instance_id = "i-bench"
[app]
user = "$user"
port = ${ports[2]}
alternate_port = ${ports[3]}
[proxy]
listen = "127.0.0.1:${ports[1]}"
worker_processes = 1
[health]
path = "/health"
interval = "1s"
timeout = "500ms"
# The CPU and disk rules would judge this busy machine, not the daemon.
cpu = {}
root_filesystem = {}
[deploy]
health_gate_successes = 1
health_gate_interval = "100ms"
[aws]
region = "us-east-1"
endpoint_url = "$endpoint"
[worker]
queue_url = "$hm_queue"
http_connections = $connections
TOML

# Waits for the queue to be drained in the background (started before the consumer, so the
# 100 ms polling treats both alike); the time it saw it empty lands in the file $2.
watch_drained() { helper drained "$1" > "$2" & drain_pid=$!; }
stats() { curl -fsS "$proxy/_bench/stats"; }

echo "worker: $messages messages, $connections connections, moto_server at $endpoint"

# 1a. hostmanager: queue first; the daemon starts once the first release serves.
helper fill "$hm_queue" "$messages"
"$bin" --root "$root" run 2>"$work/agent.log" & agent=$!
await "$bin" --root "$root" status >/dev/null 2>&1
watch_drained "$hm_queue" "$work/hm.drained"
"$bin" --root "$root" deploy "$work/bundle" --label bench --wait >/dev/null
wait "$drain_pid"
stats > "$work/hm.throughput"

# 2a. hostmanager latency: a trickle into the same (now empty) queue while the daemon polls.
curl -fsS -o /dev/null "$proxy/_bench/reset"
sent=$(helper trickle "$hm_queue" "$rate" "$latency_seconds")
watch_drained "$hm_queue" "$work/hm.latency.drained"
wait "$drain_pid"
stats > "$work/hm.latency"
# The daemon publishes its status once a second: wait until it counts every message.
counted() {
    "$bin" --root "$root" status --json > "$work/hm.status" &&
        "$py" -c 'import json, sys; w = json.load(open(sys.argv[1])).get("worker") or {}; sys.exit(0 if w.get("totals", {}).get("processed", 0) >= int(sys.argv[2]) else 1)' \
            "$work/hm.status" "$(( messages + sent ))"
}
await counted

# The peer runs without the agent: stop it (the app and nginx stay up, see cleanup).
kill -TERM "$agent"; wait "$agent" 2>/dev/null || true; agent=""

# 1b. the peer, on its own queue, through the same nginx and app.
helper fill "$peer_queue" "$messages"
curl -fsS -o /dev/null "$proxy/_bench/reset"
watch_drained "$peer_queue" "$work/peer.drained"
helper peer "$peer_queue" "$proxy/" "$connections" "$messages"
wait "$drain_pid"
stats > "$work/peer.throughput"

# 2b. peer latency: the peer long-polls first, then the same trickle.
curl -fsS -o /dev/null "$proxy/_bench/reset"
PEER_READY="$work/peer.ready" helper peer "$peer_latency_queue" "$proxy/" "$connections" "$sent" & peer_pid=$!
pids+=("$peer_pid")
await test -e "$work/peer.ready"   # its threads are polling before the first message
helper trickle "$peer_latency_queue" "$rate" "$latency_seconds" >/dev/null
wait "$peer_pid"
stats > "$work/peer.latency"

"$py" - "$work" "$messages" "$rate" "$latency_seconds" <<'PY'
import json, sys
work, messages, rate, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
load = lambda name: json.load(open(f"{work}/{name}"))
def throughput(side):
    stats = load(f"{side}.throughput")
    end = float(open(f"{work}/{side}.drained").read())
    span = end - stats["first"]
    return messages / span, span, stats["count"]
def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")
hm, peer = throughput("hm"), throughput("peer")
print(f"throughput (queue -> app -> delete): hostmanager {hm[0]:7.1f} msg/s ({hm[1]:.1f} s, {hm[2]} POSTs)")
print(f"                                     peer        {peer[0]:7.1f} msg/s ({peer[1]:.1f} s, {peer[2]} POSTs)")
print(f"                                     ratio {hm[0] / peer[0]:.2f}x")
lat = {side: load(f"{side}.latency")["latencies_ms"] for side in ("hm", "peer")}
print(f"send -> app latency at {rate} msg/s for {seconds} s:")
for side, name in (("hm", "hostmanager"), ("peer", "peer       ")):
    print(f"  {name} p50 {pct(lat[side], 0.5):6.1f} ms, p99 {pct(lat[side], 0.99):6.1f} ms over {len(lat[side])} messages")
print(f"  added by hostmanager over the peer: p50 {pct(lat['hm'], 0.5) - pct(lat['peer'], 0.5):+.1f} ms, "
      f"p99 {pct(lat['hm'], 0.99) - pct(lat['peer'], 0.99):+.1f} ms")
worker = load("hm.status").get("worker") or {}
minute = worker.get("last_minute", {})
print(f"hostmanager's own status: processed {worker.get('totals', {}).get('processed')}, "
      f"POST to the app (last minute) p50 {minute.get('latency_p50_ms')} ms, p99 {minute.get('latency_p99_ms')} ms")
PY
