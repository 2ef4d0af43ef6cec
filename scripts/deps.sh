#!/usr/bin/env bash
# Installs the system packages hostmanager needs, skipping what is already there.
#   scripts/deps.sh demo   nginx, curl (what `make demo` needs)
#   scripts/deps.sh test   the demo's packages plus what the test suite uses
# Runs non-interactively; fails loudly when an install fails.
set -euo pipefail

want="${1:-test}"
packages=()
need() { command -v "$1" >/dev/null 2>&1 || [ -x "$2" ] || packages+=("$3"); }

need nginx /usr/sbin/nginx nginx
need curl /usr/bin/curl curl
if [ "$want" = test ]; then
    need systemd-analyze /usr/bin/systemd-analyze systemd
fi

if [ ${#packages[@]} -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "deps: need root (or sudo) to install: ${packages[*]}" >&2; exit 1; }
        sudo="sudo"
    fi
    echo "deps: installing ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # policy-rc.d-less machines would start the distribution's nginx: hostmanager runs its own.
    $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "deps: cargo is missing; install Rust first: https://rustup.rs" >&2
    exit 1
fi
