#!/usr/bin/env bash
# `make demo`: the agent on the embedded default (no AWS, no controller) deploys the sample
# app behind nginx, prints the URL and the status, and keeps running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh demo
cargo build --locked --quiet
bin="$PWD/target/debug/hostmanager"
# A root nobody else can have prepared: a root agent trusts its state, config and hooks, so
# never a predictable path in world-writable /tmp. mktemp creates it atomically, 0700, ours;
# it is opened to 0755 below so the app user and nginx's workers can traverse it.
# DEMO_ROOT overrides it (it must then be ours, and it is kept after the demo).
if [ -n "${DEMO_ROOT:-}" ]; then
    root="$DEMO_ROOT"
    mkdir -p "$root"
    if [ "$(stat -c %u "$root")" != "$(id -u)" ]; then
        echo "demo: $root belongs to uid $(stat -c %u "$root"), not to us; refusing to run an agent on it" >&2
        exit 1
    fi
    created=""
else
    root="$(mktemp -d "${TMPDIR:-/tmp}/hostmanager-demo.XXXXXX")"
    created="$root"
fi
hm() { "$bin" --root "$root" "$@"; }

if [ "$(id -u)" -eq 0 ] && ! id webapp >/dev/null 2>&1; then
    echo "demo: creating the unprivileged app user 'webapp' (apps never run as root)"
    useradd --system --no-create-home --shell /usr/sbin/nologin webapp
fi
mkdir -p "$root/etc/hostmanager"
chmod 755 "$root"
cp examples/local/agent.toml "$root/etc/hostmanager/agent.toml"
if [ -z "$created" ]; then
    hm stop-apps >/dev/null 2>&1 || true   # leftovers of an earlier demo on this root
fi

agent=""
# Ctrl-C (SIGINT to the whole foreground group) or any exit: stop the agent and wait for it,
# then stop the app and nginx directly (`stop-apps` without an agent, so it cannot be refused
# by an agent that is shutting down), then remove a root this run created.
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$agent" ]; then
        kill -TERM "$agent" 2>/dev/null || true
        wait "$agent" 2>/dev/null || true
    fi
    hm stop-apps || true
    if [ -n "$created" ]; then rm -rf "$created"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "demo: starting the agent on root $root (its log: $root/agent.log)"
# The binary itself, not through `hm`: a backgrounded function is a subshell, and $! would be
# the subshell's pid, so the kill in cleanup would miss the agent.
"$bin" --root "$root" run 2>"$root/agent.log" &
agent=$!

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
