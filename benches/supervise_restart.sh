#!/usr/bin/env bash
# Crash-to-serving-again: SIGKILL the sample app's server process (python3), then time until a
# request to the app succeeds again. The same app under hostmanager and under supervisord
# (Debian's `supervisor`), plus the app's own cold start as the floor: no supervisor can bring
# it back faster than it starts. Loopback only. Prints numbers and ratios; never asserts.
#   Targets: supervisord / hostmanager >= 5x, hostmanager / floor <= 1.2x.
#   ROUNDS=N (default 10) kills per supervisor; medians are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
bin="${HOSTMANAGER_BIN:-$repo/target/release/hostmanager}"
rounds="${ROUNDS:-10}"
[ -x "$bin" ] || { echo "build first: cargo build --release (or make bench)" >&2; exit 1; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# supervisord from Debian, installed without starting the distribution's own service.
if ! command -v supervisord >/dev/null 2>&1; then
    echo "bench: installing supervisor (apt)"
    policy_added=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends supervisor
    [ -n "$policy_added" ] && as_root rm -f /usr/sbin/policy-rc.d
fi

user="$(id -un)"
if [ "$(id -u)" -eq 0 ]; then
    user=webapp
    id webapp >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin webapp
fi

# Under /tmp: the app user must be able to reach everything.
work="$(mktemp -d /tmp/hm-bench-XXXXXX)"
chmod 755 "$work"
agent_pid="" supervisord_pid=""
cleanup() {
    set +e
    if [ -n "$agent_pid" ]; then
        kill -TERM "$agent_pid" 2>/dev/null; wait "$agent_pid" 2>/dev/null
    fi
    "$bin" --root "$work/hm" stop-apps >/dev/null 2>&1
    if [ -n "$supervisord_pid" ]; then
        supervisorctl -c "$work/sv/supervisord.conf" shutdown >/dev/null 2>&1
        kill -TERM "$supervisord_pid" 2>/dev/null; wait "$supervisord_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# The driver: spawns/kills processes and polls HTTP with ~1 ms resolution.
cat >"$work/driver.py" <<'PY'
import os, pwd, signal, socket, statistics, subprocess, sys, time

def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports

def serving(port, path="/health"):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
            head = s.recv(16)
            return head.split(b" ")[1:2] == [b"200"]
    except (OSError, IndexError):
        return False

def wait_serving(port, timeout=30.0):
    start = time.monotonic()
    while not serving(port):
        if time.monotonic() - start > timeout:
            sys.exit(f"port {port} did not serve within {timeout}s")
        time.sleep(0.001)
    return time.monotonic() - start

def python_in_group(leader):
    """The python3 server in the process group led by `leader` (it may be the leader)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[2]) == leader and fields[0] != "Z" and comm.startswith("python3"):
            return int(entry)
    sys.exit(f"no python3 in process group {leader}")

def report(label, samples):
    ms = [s * 1000 for s in samples]
    print(f"  {label}: median {statistics.median(ms):.1f} ms (min {min(ms):.1f}, max {max(ms):.1f}, n={len(ms)})", file=sys.stderr, flush=True)
    return statistics.median(ms)

def floor(rounds, appdir, user, python):
    port = free_ports(1)[0]
    account = pwd.getpwnam(user)
    def drop():
        os.setsid()
        if os.getuid() == 0:
            os.setgroups([]); os.setgid(account.pw_gid); os.setuid(account.pw_uid)
    samples = []
    for _ in range(rounds):
        start = time.monotonic()
        app = subprocess.Popen([python, "application.py"], cwd=appdir, preexec_fn=drop,
                               env={"PATH": os.path.dirname(python), "PORT": str(port)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_serving(port)
        samples.append(time.monotonic() - start)
        app.kill(); app.wait()
    return samples

def crash(rounds, ports, leader_cmd, settle):
    """Kills the python3 server `rounds` times; per port, the time until it serves again.
    The app's leader comes from `leader_cmd`; apps lead their own process group."""
    samples = {p: [] for p in ports}
    for _ in range(rounds):
        for p in ports:
            wait_serving(p)
        time.sleep(settle)  # a stable run: restart policies are back to their first delay
        leader = int(subprocess.check_output(leader_cmd, shell=True).strip())
        target = python_in_group(leader)
        start = time.monotonic()
        os.kill(target, signal.SIGKILL)
        pending = set(ports)
        while pending:
            for p in list(pending):
                if serving(p):
                    samples[p].append(time.monotonic() - start)
                    pending.discard(p)
            if time.monotonic() - start > 60:
                sys.exit("the app did not come back within 60s")
            time.sleep(0.001)
    return samples

mode = sys.argv[1]
if mode == "ports":
    print(" ".join(map(str, free_ports(int(sys.argv[2])))))
elif mode == "floor":
    print(report("app cold start", floor(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])))
elif mode == "crash":
    rounds, leader_cmd, settle = int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    targets = [arg.split("=", 1) for arg in sys.argv[5:]]  # label=port
    results = crash(rounds, [int(port) for _, port in targets], leader_cmd, settle)
    print(" ".join(f"{report(label, results[int(port)]):.3f}" for label, port in targets))
PY
# Progress goes to stderr; the medians (ms) come back on stdout.
drive() { python3 "$work/driver.py" "$@"; }

# The same interpreter for everyone: the one the app's PATH finds (hostmanager gives apps a
# standard PATH, never the caller's).
app_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
python="$(PATH=$app_path command -v python3)"
# The same app directory for everyone, readable by the app user.
cp -r examples/sample-app "$work/app"
chmod -R a+rX "$work/app"

echo "crash-to-serving: SIGKILL of the app's python3 server → first HTTP 200, $rounds rounds each"
floor_ms="$(drive floor "$rounds" "$work/app" "$user" "$python")"

# hostmanager: its own root, loopback ports, nginx in front (also measured through it).
read -r proxy_port app_port alt_port <<<"$(drive ports 3)"
mkdir -p "$work/hm/etc/hostmanager"
chmod 755 "$work/hm"
cat >"$work/hm/etc/hostmanager/agent.toml" <<TOML
[app]
user = "$user"
port = $app_port
alternate_port = $alt_port
[proxy]
listen = "127.0.0.1:$proxy_port"
worker_processes = 1
[health]
path = "/health"
interval = "1s"
timeout = "500ms"
[deploy]
health_gate_successes = 2
health_gate_interval = "100ms"
[supervise]
stable_after = "1s"
TOML
"$bin" --root "$work/hm" run 2>"$work/hm-agent.log" &
agent_pid=$!
for _ in $(seq 200); do "$bin" --root "$work/hm" status >/dev/null 2>&1 && break; sleep 0.05; done
"$bin" --root "$work/hm" deploy "$work/app" --wait >/dev/null
leader_of_web="'$bin' --root '$work/hm' status --json | python3 -c 'import json,sys; print(next(p[\"pid\"] for p in json.load(sys.stdin)[\"processes\"] if p[\"name\"] == \"web\"))'"
read -r hm_ms hm_nginx_ms <<<"$(drive crash "$rounds" "$leader_of_web" 1.5 \
    "hostmanager, direct=$app_port" "hostmanager, through nginx=$proxy_port")"

# supervisord: the same app, user and port, its default restart settings. (supervisord looks
# commands up in its own PATH before dropping privileges: give it the absolute path.)
read -r sv_port <<<"$(drive ports 1)"
mkdir -p "$work/sv"
user_line=""
[ "$(id -u)" -eq 0 ] && user_line="user=$user"
cat >"$work/sv/supervisord.conf" <<INI
[unix_http_server]
file=$work/sv/supervisor.sock
[supervisord]
nodaemon=true
logfile=$work/sv/supervisord.log
pidfile=$work/sv/supervisord.pid
childlogdir=$work/sv
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://$work/sv/supervisor.sock
[program:web]
command=$python application.py
directory=$work/app
environment=PORT="$sv_port"
$user_line
autorestart=true
stopasgroup=true
killasgroup=true
INI
supervisord -c "$work/sv/supervisord.conf" >/dev/null 2>&1 &
supervisord_pid=$!
leader_of_sv="supervisorctl -c '$work/sv/supervisord.conf' pid web"
read -r sv_ms <<<"$(drive crash "$rounds" "$leader_of_sv" 1.5 "supervisord=$sv_port")"

python3 - "$floor_ms" "$hm_ms" "$hm_nginx_ms" "$sv_ms" "$(supervisord --version)" <<'PY'
import sys
floor, hm, hm_nginx, sv = map(float, sys.argv[1:5])
version = sys.argv[5]
print()
print(f"  app cold start (floor)          {floor:8.1f} ms")
print(f"  hostmanager (direct to the app) {hm:8.1f} ms")
print(f"  hostmanager (through nginx)     {hm_nginx:8.1f} ms")
print(f"  supervisord {version:<19} {sv:8.1f} ms")
print(f"  supervisord / hostmanager       {sv / hm:8.1f}x   (target >= 5x)")
print(f"  hostmanager / floor             {hm / floor:8.2f}x   (target <= 1.2x)")
PY
