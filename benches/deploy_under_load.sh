#!/usr/bin/env bash
# Keep-alive clients through the agent's nginx: wrk (8 kept-alive connections) for 20 s
# steady, then 20 s during back-to-back deployments. Prints requests, socket errors, non-2xx,
# p50 and p99 of both phases and the p99 ratio (goal: 0 errors, p99 <= 2x steady). Asserts
# nothing. Loopback only.
set -euo pipefail
bin="${HOSTMANAGER_BIN:?run through make bench}"
command -v wrk >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
seconds="${BENCH_SECONDS:-20}"
work="$(mktemp -d /tmp/hm-bench-load.XXXXXX)"
chmod 755 "$work"
trap '"$bin" --root "$work/root" stop-apps >/dev/null 2>&1 || true; kill "${agent:-0}" "${deployer:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
# Polls "$@" until it succeeds; gives up after 60 s so a broken setup cannot spin forever.
await() { local deadline=$(( $(date +%s) + 60 )); until "$@"; do [ "$(date +%s)" -lt "$deadline" ] || { echo "bench: gave up waiting for: $*" >&2; exit 1; }; done; }
ports=($(python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])'))
for version in v1 v2; do
    python3 - "$work/bundle-$version.zip" "$version" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.write("examples/sample-app/application.py", "application.py")
    z.write("examples/sample-app/Procfile", "Procfile")
    z.writestr("VERSION", sys.argv[2] + "\n")
PY
done
mkdir -p "$work/root/etc/hostmanager"
cat > "$work/root/etc/hostmanager/agent.toml" <<TOML
[app]
user = "$( [ "$(id -u)" -eq 0 ] && echo webapp || id -un )"
port = ${ports[0]}
alternate_port = ${ports[2]}
[proxy]
listen = "127.0.0.1:${ports[1]}"
worker_processes = 1
[health]
path = "/health"
[deploy]
health_gate_successes = 1
health_gate_interval = "20ms"
TOML
if [ "$(id -u)" -eq 0 ] && ! id webapp >/dev/null 2>&1; then useradd --system --no-create-home --shell /usr/sbin/nologin webapp; fi
"$bin" --root "$work/root" run 2>"$work/agent.log" & agent=$!
await "$bin" --root "$work/root" status >/dev/null 2>&1
"$bin" --root "$work/root" deploy "$work/bundle-v1.zip" --wait >/dev/null
url="http://127.0.0.1:${ports[1]}/"
phase() { wrk -t2 -c8 -d"${seconds}s" --latency "$url" > "$work/$1.txt"; }
phase steady
( i=0; while :; do i=$((i + 1)); v=$([ $((i % 2)) -eq 1 ] && echo v2 || echo v1)
  "$bin" --root "$work/root" deploy "$work/bundle-$v.zip" --wait >/dev/null || echo "deploy $i failed" >&2; done ) & deployer=$!
phase deploying
kill "$deployer" 2>/dev/null || true; wait "$deployer" 2>/dev/null || true; deployer=0
deploys=$("$bin" --root "$work/root" deployments --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo "?")
python3 - "$work/steady.txt" "$work/deploying.txt" "$deploys" "$("$bin" --root "$work/root" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["proxy"].get("switch",{}).get("mode","?"))')" <<'PY'
import re, sys
def read(path):
    text = open(path).read()
    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", text, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return requests, errors, int(non2xx.group(1)) if non2xx else 0, ms("50"), ms("99")
steady, deploying = read(sys.argv[1]), read(sys.argv[2])
print(f"switch: {sys.argv[4]}; deployments during the second phase (records kept): {sys.argv[3]}")
for name, (requests, errors, non2xx, p50, p99) in (("steady", steady), ("deploying", deploying)):
    print(f"{name:10} requests {requests:8}  socket errors {errors:4}  non-2xx {non2xx:4}  p50 {p50:7.3f} ms  p99 {p99:7.3f} ms")
print(f"p99 deploying / steady: {deploying[4] / steady[4]:.2f}x (goal <= 2x); errors: {deploying[1] + deploying[2]} (goal 0)")
PY
