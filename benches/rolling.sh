#!/usr/bin/env bash
# A rolling deployment of 6 hosts (batch 34 %: 2 batches of 3) through the controller behind
# its HAProxy, with 4 clients sending requests through the load balancer throughout. Prints the
# deployment's wall time against its floor (per batch: the health gate's span plus one
# agent-check interval for HAProxy to take the batch out), the ratio, and the requests that
# failed. Asserts nothing. Run by `make bench` (release build, HOSTMANAGER_BIN set).
# Loopback only; everything it starts is stopped, and its mktemp directory removed.
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir="$(dirname "${HOSTMANAGER_BIN:?run through make bench}")"
agent_bin="$bin_dir/hostmanager"
controller_bin="$bin_dir/hostmanager-controller"
command -v haproxy >/dev/null || { echo "rolling: needs haproxy (scripts/deps.sh fleet)" >&2; exit 1; }
hosts=6
gate_reports=3
gate_min_s=3
agent_interval_s=1
work="$(mktemp -d /tmp/hm-bench-rolling.XXXXXX)"
chmod 755 "$work"
data="$work/controller"
url="http://127.0.0.1:17700"
hmc() { "$controller_bin" --data "$data" --url "$url" "$@"; }
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for i in $(seq "$hosts"); do "$agent_bin" --root "$work/host$i" stop-apps >/dev/null 2>&1 || true; done
    if [ -f "$data/haproxy/haproxy.pid" ]; then kill -TERM "$(head -1 "$data/haproxy/haproxy.pid")" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
# Polls "$@" until it succeeds; gives up after 90 s so a broken setup cannot spin forever.
await() { local deadline=$(( $(date +%s) + 90 )); until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -lt "$deadline" ] || { echo "rolling: gave up waiting for: $*" >&2; exit 1; }; sleep 0.2; done; }

if [ "$(id -u)" -eq 0 ] && ! id webapp >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin webapp
fi
mkdir -p "$data"
cat >"$work/controller.toml" <<TOML
[server]
listen = "127.0.0.1:17700"
[hosts]
interval = "1s"
[deploy]
health_gate_reports = $gate_reports
health_gate_min = "${gate_min_s}s"
tick = "200ms"
lease = "2s"
[load_balancer]
listen = "127.0.0.1:17780"
agent_listen = "127.0.0.1:17781"
domain = "elb.bench"
agent_interval = "${agent_interval_s}s"
check_interval = "1s"
TOML
"$controller_bin" --data "$data" run --config "$work/controller.toml" 2>"$work/controller.log" &
pids+=($!)
await curl -fsS "$url/healthz"
hmc env create web \
    --option aws:elasticbeanstalk:command:DeploymentPolicy=Rolling \
    --option aws:elasticbeanstalk:command:BatchSize=34 \
    --option aws:elasticbeanstalk:environment:process:default:HealthyThresholdCount=2 >/dev/null
token="$(hmc enroll-token create web --uses "$hosts")"
for i in $(seq "$hosts"); do
    root="$work/host$i"
    mkdir -p "$root/etc/hostmanager"
    chmod 755 "$root"
    printf '%s\n' "$token" >"$root/etc/hostmanager/enrollment.token"
    chmod 600 "$root/etc/hostmanager/enrollment.token"
    sed -e "s/^instance_id = .*/instance_id = \"i-bench$i\"/" \
        -e "s/^port = 18500/port = 1861$i/" \
        -e "s/^alternate_port = 18501/alternate_port = 1862$i/" \
        -e "s/127.0.0.1:18080/127.0.0.1:1818$i/" \
        examples/local/agent.toml >"$root/etc/hostmanager/agent.toml"
    cat >>"$root/etc/hostmanager/agent.toml" <<TOML

[controller]
url = "$url"
enrollment_token_file = "$root/etc/hostmanager/enrollment.token"
interval = "1s"
advertise_addr = "127.0.0.1:1818$i"
TOML
    "$agent_bin" --root "$root" run 2>"$root/agent.log" &
    pids+=($!)
done
enrolled() { [ "$(hmc --json instances web | grep -c '"InstanceId"')" -ge "$hosts" ]; }
await enrolled
for version in v1 v2; do
    mkdir -p "$work/app-$version"
    cp examples/sample-app/application.py examples/sample-app/Procfile "$work/app-$version/"
    echo "$version" >"$work/app-$version/VERSION"
done
hmc deploy web "$work/app-v1" --label v1 --wait >/dev/null 2>&1
await curl -fsS -H 'Host: web.elb.bench' http://127.0.0.1:17780/

# Clients through the load balancer, one connection per request, counting what failed.
python3 - "$work/load.out" <<'PY' &
import http.client, sys, threading, time, os
stop_file = sys.argv[1] + ".stop"
counts = {"ok": 0, "failed": 0}
lock = threading.Lock()
def client():
    while not os.path.exists(stop_file):
        try:
            c = http.client.HTTPConnection("127.0.0.1", 17780, timeout=10)
            c.request("GET", "/", headers={"Host": "web.elb.bench", "Connection": "close"})
            r = c.getresponse(); body = r.read(); c.close()
            key = "ok" if r.status == 200 and body.startswith(b"Hello from v") else "failed"
        except Exception:
            key = "failed"
        with lock:
            counts[key] += 1
threads = [threading.Thread(target=client) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
open(sys.argv[1], "w").write(f"{counts['ok']} {counts['failed']}\n")
PY
load=$!
start_ns=$(date +%s%N)
hmc deploy web "$work/app-v2" --label v2 --wait >/dev/null 2>"$work/deploy.err" || { echo "rolling: the deployment failed:" >&2; cat "$work/deploy.err" >&2; }
end_ns=$(date +%s%N)
touch "$work/load.out.stop"
wait "$load"
read -r ok failed <"$work/load.out"
batches=$(( (hosts + (hosts * 34 + 99) / 100 - 1) / ((hosts * 34 + 99) / 100) ))
python3 - "$start_ns" "$end_ns" "$batches" "$gate_min_s" "$agent_interval_s" "$ok" "$failed" <<'PY'
import sys
start, end, batches, gate, agent, ok, failed = (int(x) for x in sys.argv[1:])
wall = (end - start) / 1e9
floor = batches * (gate + agent)
print(f"rolling deployment, 6 hosts, {batches} batches: {wall:.1f} s; floor {floor:.1f} s "
      f"({batches} x (gate {gate} s + drain notice {agent} s)); ratio {wall / floor:.2f}")
print(f"requests through HAProxy during it: {ok + failed}, failed: {failed}")
PY
