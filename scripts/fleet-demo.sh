#!/usr/bin/env bash
# `make fleet-demo`: a controller, its load balancer (HAProxy) and three agents on this machine
# (loopback ports, each agent with its own root). The controller creates environment `demo`
# (Rolling deployments, one host per batch), the agents enroll with a token, the sample app is
# deployed to all three through the controller, and the environment answers through the load
# balancer. Everything runs until Ctrl-C, then everything stops (HAProxy too) and the demo's
# mktemp directory is removed.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh fleet
cargo build --locked --quiet --workspace
agent_bin="$PWD/target/debug/hostmanager"
controller_bin="$PWD/target/debug/hostmanager-controller"
# Not a predictable path in /tmp: root agents trust their state, config and hooks.
base="$(mktemp -d "${TMPDIR:-/tmp}/hostmanager-fleet.XXXXXX")"
chmod 755 "$base"
data="$base/controller"
url="http://127.0.0.1:17600"
hmc() { "$controller_bin" --data "$data" --url "$url" "$@"; }

if [ "$(id -u)" -eq 0 ] && ! id webapp >/dev/null 2>&1; then
    echo "fleet-demo: creating the unprivileged app user 'webapp' (apps never run as root)"
    useradd --system --no-create-home --shell /usr/sbin/nologin webapp
fi

pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for i in 1 2 3; do "$agent_bin" --root "$base/host$i" stop-apps >/dev/null 2>&1 || true; done
    # Hosts the controller's local provisioner started (Immutable and the like) outlive it too.
    for root in "$base"/provisioned/*; do
        [ -d "$root" ] || continue
        "$agent_bin" --root "$root" stop-apps >/dev/null 2>&1 || true
        if [ -f "$root/agent.pid" ]; then
            pid="$(cat "$root/agent.pid")"
            kill -TERM "$pid" 2>/dev/null || true
            # Not our child: wait (5 s at most) until it is gone before its root is removed.
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    done
    # The load balancer outlives a controller restart by design; the demo's ends with it.
    if [ -f "$data/haproxy/haproxy.pid" ]; then kill -TERM "$(head -1 "$data/haproxy/haproxy.pid")" 2>/dev/null || true; fi
    rm -rf "$base"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$data" "$base/provisioned"
# The hosts the local provisioner starts for Immutable, RollingWithAdditionalBatch and
# TrafficSplitting deployments: the local example, reporting every 2 s (the provisioner gives
# each its own id, ports, controller URL and enrollment token).
cp examples/local/agent.toml "$base/host-template.toml"
printf '\n[controller]\ninterval = "2s"\n' >>"$base/host-template.toml"
cat >"$base/controller.toml" <<TOML
[server]
listen = "127.0.0.1:17600"
[hosts]
interval = "2s"
[deploy]
health_gate_reports = 3
health_gate_min = "5s"
[load_balancer]
listen = "127.0.0.1:17080"
agent_listen = "127.0.0.1:17777"
domain = "elb.local"
check_interval = "2s"
[provisioner]
kind = "local"
agent = "$agent_bin"
template = "$base/host-template.toml"
dir = "$base/provisioned"
TOML
echo "fleet-demo: starting the controller on $url (log: $base/controller.log)"
"$controller_bin" --data "$data" run --config "$base/controller.toml" 2>"$base/controller.log" &
pids+=($!)
for _ in $(seq 100); do curl -fsS "$url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

hmc env create demo \
    --option aws:elasticbeanstalk:command:DeploymentPolicy=Rolling \
    --option aws:elasticbeanstalk:command:BatchSizeType=Fixed \
    --option aws:elasticbeanstalk:command:BatchSize=1 \
    --option aws:elasticbeanstalk:environment:process:default:DeregistrationDelay=5 >/dev/null
token="$(hmc enroll-token create demo --uses 3)"
for i in 1 2 3; do
    root="$base/host$i"
    mkdir -p "$root/etc/hostmanager"
    chmod 755 "$root"
    printf '%s\n' "$token" >"$root/etc/hostmanager/enrollment.token"
    chmod 600 "$root/etc/hostmanager/enrollment.token"
    # The local example, moved to this host's ports, linked to the controller.
    sed -e "s/^instance_id = .*/instance_id = \"i-demo$i\"/" \
        -e "s/^port = 18500/port = 1851$i/" \
        -e "s/^alternate_port = 18501/alternate_port = 1852$i/" \
        -e "s/127.0.0.1:18080/127.0.0.1:1808$i/" \
        examples/local/agent.toml >"$root/etc/hostmanager/agent.toml"
    cat >>"$root/etc/hostmanager/agent.toml" <<TOML

[controller]
url = "$url"
enrollment_token_file = "$root/etc/hostmanager/enrollment.token"
interval = "2s"
advertise_addr = "127.0.0.1:1808$i"
TOML
    echo "fleet-demo: starting agent i-demo$i on root $root (nginx on 127.0.0.1:1808$i)"
    "$agent_bin" --root "$root" run 2>"$root/agent.log" &
    pids+=($!)
done

for _ in $(seq 150); do
    [ "$(hmc --json instances demo | grep -c '"InstanceId"')" -ge 3 ] && break
    sleep 0.2
done
hmc deploy demo examples/sample-app --label v1 --wait
echo
for i in 1 2 3; do echo "fleet-demo: curl 127.0.0.1:1808$i -> $(curl -fsS "http://127.0.0.1:1808$i/")"; done
for _ in $(seq 100); do curl -fsS -H 'Host: demo.elb.local' http://127.0.0.1:17080/ >/dev/null 2>&1 && break; sleep 0.2; done
echo "fleet-demo: through the load balancer, curl -H 'Host: demo.elb.local' 127.0.0.1:17080 -> $(curl -fsS -H 'Host: demo.elb.local' http://127.0.0.1:17080/)"
echo
hmc env health demo
cat <<TXT

The controller and the agents keep running. In another terminal:
  $controller_bin --data $data --url $url env health demo --refresh
  $controller_bin --data $data --url $url env events demo --follow
  $controller_bin --data $data --url $url logs demo            # every instance's log tail
  $controller_bin --data $data --url $url deploy demo examples/sample-app --label v2 --wait   # one host per batch
  $controller_bin --data $data --url $url deploy demo examples/sample-app --label v3 --wait --option aws:elasticbeanstalk:command:DeploymentPolicy=Immutable   # three new local hosts replace them
  while true; do curl -s -H 'Host: demo.elb.local' http://127.0.0.1:17080/; done               # no request fails meanwhile
Press Ctrl-C to stop everything.
TXT
wait "${pids[0]}"
