#!/usr/bin/env bash
# Installs the outside tools the test suite drives, when missing (Debian, as root):
#   redis-cli, redis-benchmark  (redis-tools)            girder-net's real-client tests
#   chromium, chromedriver      (chromium chromium-driver) the dashboard's browser test
# Tests that need a tool skip on a developer machine without it, but fail when CI=true.
set -euo pipefail
need=()
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "== installing ${need[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
