#!/usr/bin/env bash
# Deploy to serving of bundles without a Procfile (docs/platforms.md): a Python app with 10
# requirements and a Node.js app with 10 dependencies, with a cold and a warm download cache,
# next to the floor of the same `pip install` / `npm ci` plus the app's start run by hand on
# this machine. Packages come from PyPI and npm (the only traffic that leaves loopback; the
# apps and nginx stay on 127.0.0.1). Prints the numbers and the ratios; asserts nothing.
set -euo pipefail
# The interpreters the agent builds with (its app PATH), for the floor too.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
bin="${HOSTMANAGER_BIN:?run through make bench}"
fixtures="$PWD/tests/fixtures/platforms"
work="$(mktemp -d /tmp/hm-bench-platforms.XXXXXX)"
chmod 755 "$work"
cleanup() {
    for root in "$work"/root-*; do "$bin" --root "$root" stop-apps >/dev/null 2>&1 || true; done
    # Agents and apps run in subshells: whatever still runs from the work directory.
    pkill -f "$work" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ms() { echo $(( $(date +%s%N) / 1000000 )); }
# Polls "$@" until it succeeds; gives up after 300 s so a broken setup cannot spin forever.
await() { local deadline=$(( $(date +%s) + 300 )); until "$@"; do [ "$(date +%s)" -lt "$deadline" ] || { echo "bench: gave up waiting for: $*" >&2; exit 1; }; sleep 0.05; done; }
answers() { [ "$(curl -fs "$1")" = "$2" ]; }
idle() { "$bin" --root "$1" status --json | python3 -c 'import json, sys; sys.exit(json.load(sys.stdin)["deployment"] is not None)'; }
ratio() { awk "BEGIN {printf \"%.2f\", $1/$2}"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
if [ "$(id -u)" -eq 0 ] && ! id webapp >/dev/null 2>&1; then useradd --system --no-create-home --shell /usr/sbin/nologin webapp; fi

# The two apps: the suite's fixtures with 10 requirements / dependencies.
mkdir -p "$work/python" "$work/nodejs"
cp -r "$fixtures/python/." "$work/python/"
printf '%s\n' six flask requests python-dateutil pytz idna certifi urllib3 charset-normalizer packaging > "$work/python/requirements.txt"
cp -r "$fixtures/nodejs/." "$work/nodejs/"
cat > "$work/nodejs/package.json" <<'JSON'
{"name":"bench","version":"1.0.0","private":true,"scripts":{"start":"node app.js"},
 "dependencies":{"ms":"^2.1.3","debug":"^4","lodash":"^4","uuid":"^9","commander":"^11",
 "dayjs":"^1","semver":"^7","minimist":"^1","yargs-parser":"^21","chalk":"^4"}}
JSON
(cd "$work/nodejs" && rm -f package-lock.json && npm install --package-lock-only --no-audit --no-fund --silent)
bundle() { # platform version → zip
    python3 - "$work/$1" "$work/$1-$2.zip" "$2" <<'PY'
import os, sys, zipfile
src, out, version = sys.argv[1:]
with zipfile.ZipFile(out, "w") as z:
    for base, _, files in os.walk(src):
        for name in files:
            if "node_modules" in base or name == "VERSION":
                continue
            path = os.path.join(base, name)
            z.write(path, os.path.relpath(path, src))
    z.writestr("VERSION", version + "\n")
PY
}
for v in v1 v2; do bundle python $v; bundle nodejs $v; done

# Floor: the same install and start by hand, cache empty (cold) then filled (warm).
floor_python() { # cache → ms
    local dir="$work/floor-python" p; p=$(port); rm -rf "$dir"; cp -r "$work/python" "$dir"; echo v1 > "$dir/VERSION"
    local start; start=$(ms)
    python3 -m venv "$dir/venv" >/dev/null
    "$dir/venv/bin/python" -m pip install -q --disable-pip-version-check --cache-dir "$1" -r "$dir/requirements.txt" gunicorn >/dev/null
    (cd "$dir" && exec "$dir/venv/bin/gunicorn" --bind "127.0.0.1:$p" application:application >/dev/null 2>&1) & app=$!
    await answers "http://127.0.0.1:$p/" "python v1"
    echo $(( $(ms) - start )); kill $app; wait $app 2>/dev/null || true
}
floor_nodejs() {
    local dir="$work/floor-nodejs" p; p=$(port); rm -rf "$dir"; cp -r "$work/nodejs" "$dir"; echo v1 > "$dir/VERSION"
    local start; start=$(ms)
    (cd "$dir" && npm ci --omit=dev --no-audit --no-fund --silent --cache "$1")
    (cd "$dir" && PORT=$p exec node app.js >/dev/null 2>&1) & app=$!
    await answers "http://127.0.0.1:$p/" "nodejs v1 1m"
    echo $(( $(ms) - start )); kill $app; wait $app 2>/dev/null || true
}
# hostmanager: a fresh root (empty cache) deploys v1 (cold), then v2 (warm cache, new venv /
# node_modules), each timed from `hostmanager deploy` until the version answers through nginx.
agent_deploys() { # platform → "cold warm"
    local root="$work/root-$1" app_port proxy_port alt
    app_port=$(port); alt=$(port); proxy_port=$(port)
    mkdir -p "$root/etc/hostmanager"
    cat > "$root/etc/hostmanager/agent.toml" <<TOML
[app]
user = "$( [ "$(id -u)" -eq 0 ] && echo webapp || id -un )"
port = $app_port
alternate_port = $alt
[proxy]
listen = "127.0.0.1:$proxy_port"
worker_processes = 1
[health]
path = "/health"
interval = "1s"
timeout = "500ms"
[deploy]
health_gate_successes = 1
health_gate_interval = "20ms"
TOML
    chmod 755 "$root"
    "$bin" --root "$root" run 2>"$work/agent-$1.log" & agent=$!
    await "$bin" --root "$root" status >/dev/null 2>&1
    local times=() start expected
    for v in v1 v2; do
        expected="$1 $v"; [ "$1" = nodejs ] && expected="nodejs $v 1m"
        start=$(ms)
        "$bin" --root "$root" deploy "$work/$1-$v.zip" --label "bench-$v" >/dev/null
        await answers "http://127.0.0.1:$proxy_port/" "$expected"
        times+=($(( $(ms) - start )))
        await idle "$root"
    done
    "$bin" --root "$root" stop-apps >/dev/null 2>&1 || true
    kill $agent; wait $agent 2>/dev/null || true
    echo "${times[@]}"
}

# Each step below stops what it started (the floors their app, agent_deploys its agent and
# apps); the EXIT trap stops any app a failed step left.
for platform in python nodejs; do
    cold_cache="$work/cache-$platform"
    floor_cold=$(floor_$platform "$cold_cache")
    floor_warm=$(floor_$platform "$cold_cache")
    read -r hm_cold hm_warm <<<"$(agent_deploys $platform)"
    echo "$platform (10 $([ $platform = python ] && echo requirements || echo dependencies)):"
    echo "  floor, cold cache (install + start by hand):  ${floor_cold} ms"
    echo "  hostmanager, cold cache (deploy to serving):  ${hm_cold} ms   ratio $(ratio "$hm_cold" "$floor_cold")x"
    echo "  floor, warm cache:                            ${floor_warm} ms"
    echo "  hostmanager, warm cache:                      ${hm_warm} ms   ratio $(ratio "$hm_warm" "$floor_warm")x"
done
