#!/usr/bin/env bash
# `make demo`: the agent on the embedded default (no AWS, no controller) deploys the sample
# app behind nginx, prints the URL and the status, and keeps running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh demo
cargo build --locked --quiet
bin="$PWD/target/debug/hostmanager"
# Under /tmp by default: the app user and nginx's workers must be able to reach the root.
root="${DEMO_ROOT:-/tmp/hostmanager-demo}"
hm() { "$bin" --root "$root" "$@"; }

if [ "$(id -u)" -eq 0 ] && ! id webapp >/dev/null 2>&1; then
    echo "demo: creating the unprivileged app user 'webapp' (apps never run as root)"
    useradd --system --no-create-home --shell /usr/sbin/nologin webapp
fi
mkdir -p "$root/etc/hostmanager"
chmod 755 "$root"
cp examples/local/agent.toml "$root/etc/hostmanager/agent.toml"
hm stop-apps >/dev/null 2>&1 || true   # leftovers of an earlier demo on this root

echo "demo: starting the agent on root $root (its log: $root/agent.log)"
hm run 2>"$root/agent.log" &
agent=$!
cleanup() {
    trap - EXIT INT TERM
    kill -TERM "$agent" 2>/dev/null || true
    wait "$agent" 2>/dev/null || true
    hm stop-apps || true
}
trap cleanup EXIT INT TERM

for _ in $(seq 100); do hm status >/dev/null 2>&1 && break; sleep 0.1; done
hm deploy examples/sample-app --wait
url="$(hm status --json | sed -n 's/.*"url": "\([^"]*\)".*/\1/p' | head -n1)"
echo
echo "demo: curl $url -> $(curl -fsS "$url")"
echo
hm status
cat <<TXT

The agent keeps running. In another terminal:
  $bin --root $root status
  $bin --root $root events
  $bin --root $root deploy examples/sample-app --env GREETING=hi --wait
Press Ctrl-C to stop the agent and the app.
TXT
wait "$agent"
