#!/usr/bin/env bash
# Installs the system packages hostmanager needs, skipping what is already there.
#   scripts/deps.sh demo   nginx, curl (what `make demo` needs)
#   scripts/deps.sh fleet  the demo's packages plus HAProxy (what `make fleet-demo` needs)
#   scripts/deps.sh test   all of the above plus what the test suite uses (PostgreSQL too)
# Runs non-interactively; fails loudly when an install fails.
set -euo pipefail

want="${1:-test}"
packages=()
need() { command -v "$1" >/dev/null 2>&1 || [ -x "$2" ] || packages+=("$3"); }

need nginx /usr/sbin/nginx nginx
need curl /usr/bin/curl curl
# nginx's Lua module: cutovers switch the app's port without reloading nginx (docs/nginx.md).
[ -e /usr/lib/nginx/modules/ngx_http_lua_module.so ] || packages+=(libnginx-mod-http-lua)
if [ "$want" = fleet ] || [ "$want" = test ]; then
    # The controller's load balancer, the ELB's stand-in (docs/fleet-deployments.md).
    need haproxy /usr/sbin/haproxy haproxy
fi
if [ "$want" = test ]; then
    need systemd-analyze /usr/bin/systemd-analyze systemd
    need wrk /usr/bin/wrk wrk
    # tests/fault_clock.rs moves the agent's wall clock (only its own) with libfaketime.
    [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || packages+=(faketime)
    # The controller's store conformance suite runs on a real PostgreSQL (its own initdb'd
    # cluster on a loopback port; Debian's binaries live outside PATH).
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || packages+=(postgresql)
    # The language platforms' runtimes (docs/platforms.md): tests/platforms.rs builds and runs
    # a Python, Node.js, Go and Java SE app with them; the JDK's javac packs the Java app's jar.
    /usr/bin/python3 -c "import ensurepip" >/dev/null 2>&1 || packages+=(python3-venv)
    need node /usr/bin/node nodejs
    need npm /usr/bin/npm npm
    need go /usr/bin/go golang-go
    need javac /usr/bin/javac default-jdk-headless
fi

sudo=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
if [ ${#packages[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        [ -n "$sudo" ] || { echo "deps: need root (or sudo) to install: ${packages[*]}" >&2; exit 1; }
    fi
    echo "deps: installing ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # Only the binary is used: hostmanager runs its own nginx instance with its own prefix.
    $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

# moto_server (a real S3/SQS/CloudWatch Logs API server) in the repository's own venv.
if [ "$want" = test ] && [ -z "${MOTO_SERVER:-}" ] && [ ! -x .venv/bin/moto_server ]; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" >/dev/null 2>&1; then
        echo "deps: installing python3-venv"
        ${sudo:-} apt-get update -qq
        DEBIAN_FRONTEND=noninteractive ${sudo:-} apt-get install -y -qq --no-install-recommends python3-venv
    fi
    echo "deps: installing moto[server] into .venv"
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5.1,<6'
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "deps: cargo is missing; install Rust first: https://rustup.rs" >&2
    exit 1
fi
