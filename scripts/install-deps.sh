#!/usr/bin/env bash
# Installs the Debian 12 packages the build, the tests and the benchmark need, when missing.
# Usage: scripts/install-deps.sh [build|bench]   (build: compile + test; bench: also nginx, haproxy, wrk)
set -euo pipefail

want=(build-essential cmake pkg-config libevent-dev libhiredis-dev libyaml-dev libssl-dev
      libcjson-dev libcmocka-dev redis-server curl python3 openssl)
# promtool checks the /metrics exposition and a real prometheus server scrapes it (test_metrics).
want+=(prometheus)
# clang + its runtime give the libFuzzer target; optional for running, installed when possible.
want+=(clang libclang-rt-14-dev)
# test_install renders the man page (man-db, groff-base) and checks the systemd unit (systemd-analyze).
want+=(man-db groff-base systemd)
# The admin console's browser test drives Debian's chromium headless (playwright-core, from npm, below).
want+=(chromium fonts-dejavu-core)
# Node.js and npm, unless the machine has them already (from another source, say).
command -v node >/dev/null && command -v npm >/dev/null || want+=(nodejs npm)
if [[ ${1:-build} == bench ]]; then want+=(nginx haproxy wrk util-linux iproute2); fi

# playwright-core, pinned by tests/browser/package-lock.json, into tests/browser/node_modules.
npm_deps() {
    local dir
    dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
    [[ -f $dir/node_modules/playwright-core/package.json ]] && return 0
    command -v npm >/dev/null || { echo "npm not found: the browser test will be skipped" >&2; return 0; }
    echo "installing playwright-core (npm ci in tests/browser)" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
}

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    npm_deps
    exit 0
fi

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo apt-get update -q && sudo env DEBIAN_FRONTEND=noninteractive $cmd
        npm_deps
        exit 0
    fi
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "install them with:  sudo apt-get update && sudo $cmd" >&2
    exit 1
fi
echo "installing: ${missing[*]}" >&2
apt-get update -q >&2
# nginx/redis postinst scripts try to start services; policy-rc.d keeps them stopped in containers.
DEBIAN_FRONTEND=noninteractive $cmd >&2
npm_deps
