#!/usr/bin/env bash
# Deploy time of a 10 MB / 2 000-file bundle: from `hostmanager deploy` until the new version
# serves through nginx, next to the floor of `unzip` of the same bundle + the app's own cold
# start on this machine. Prints the numbers and the ratio; asserts nothing. Loopback only.
set -euo pipefail
bin="${HOSTMANAGER_BIN:?run through make bench}"
command -v unzip >/dev/null || { apt-get install -y -qq unzip >/dev/null; }
work="$(mktemp -d /tmp/hm-bench-deploy.XXXXXX)"
chmod 755 "$work"
trap '"$bin" --root "$work/root" stop-apps >/dev/null 2>&1 || true; kill "${agent:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
ms() { echo $(( $(date +%s%N) / 1000000 )); }
# Polls "$@" until it succeeds; gives up after 60 s so a broken setup cannot spin forever.
await() { local deadline=$(( $(date +%s) + 60 )); until "$@"; do [ "$(date +%s)" -lt "$deadline" ] || { echo "bench: gave up waiting for: $*" >&2; exit 1; }; done; }
serves() { [ "$(curl -fs "$1")" = "$2" ]; }
idle() { "$bin" --root "$work/root" status --json | python3 -c 'import json, sys; sys.exit(json.load(sys.stdin)["deployment"] is not None)'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ports=($(python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])'))

python3 - "$work" <<'PY'
import os, random, sys, zipfile
work = sys.argv[1]
random.seed(7)
for version in ("v1", "v2"):
    with zipfile.ZipFile(f"{work}/bundle-{version}.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write("examples/sample-app/application.py", "application.py")
        z.write("examples/sample-app/Procfile", "Procfile")
        z.writestr("VERSION", version + "\n")
        for n in range(2000):
            # Mostly incompressible (images, minified bundles) so the zip itself is ~10 MB.
            blob = random.randbytes(4700) + (b"static asset line %d\n" % n) * 30
            z.writestr(f"assets/{n // 100:02d}/file{n:04d}.bin", blob[:5200])
PY
size=$(du -m "$work/bundle-v1.zip" | cut -f1)
files=$(unzip -Z1 "$work/bundle-v1.zip" | wc -l)

floor=()
for i in 1 2 3; do
    rm -rf "$work/unzipped"; start=$(ms)
    unzip -q "$work/bundle-v1.zip" -d "$work/unzipped"
    (cd "$work/unzipped" && PORT=${ports[2]} exec python3 application.py >/dev/null 2>&1) & app=$!
    await curl -fso /dev/null "http://127.0.0.1:${ports[2]}/health"
    floor+=($(( $(ms) - start ))); kill $app; wait $app 2>/dev/null || true
done
floor_ms=$(printf '%s\n' "${floor[@]}" | median)

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
interval = "1s"
timeout = "500ms"
[deploy]
health_gate_successes = 1
health_gate_interval = "20ms"
TOML
if [ "$(id -u)" -eq 0 ] && ! id webapp >/dev/null 2>&1; then useradd --system --no-create-home --shell /usr/sbin/nologin webapp; fi
"$bin" --root "$work/root" run 2>"$work/agent.log" & agent=$!
await "$bin" --root "$work/root" status >/dev/null 2>&1

deploy_ms=()
for i in 1 2 3 4; do
    version=$([ $((i % 2)) -eq 1 ] && echo v1 || echo v2)
    start=$(ms)
    "$bin" --root "$work/root" deploy "$work/bundle-$version.zip" --label "bench-$i" >/dev/null
    await serves "http://127.0.0.1:${ports[1]}/" "Hello from $version"
    deploy_ms+=($(( $(ms) - start )))
    # The old release stops after the switch; the next round starts once this one is done.
    await idle
done
first=${deploy_ms[0]}
cutover=$(printf '%s\n' "${deploy_ms[@]:1}" | median)

echo "bundle: ${size} MB, ${files} files"
echo "floor (unzip + app cold start):            ${floor_ms} ms"
echo "hostmanager first deploy (to serving):     ${first} ms   ratio $(awk "BEGIN {printf \"%.2f\", $first/$floor_ms}")x"
echo "hostmanager zero-downtime redeploy:        ${cutover} ms   ratio $(awk "BEGIN {printf \"%.2f\", $cutover/$floor_ms}")x  (target <= 1.5x)"
echo "(health gate: 1 check; the default of 3 checks 500 ms apart adds about 1 s by design)"
