#!/usr/bin/env bash
# Fuzzes the RESP request parser: fuzz/run.sh [SECONDS] (default 60).
#
# Installs cargo-fuzz when missing (`cargo install cargo-fuzz`). cargo fuzz needs
# nightly-only compiler flags (sanitizers, coverage instrumentation); on a stable
# toolchain RUSTC_BOOTSTRAP=1 unlocks them (set here unless you chose otherwise).
# Findings land in fuzz/artifacts/resp_parser/; the corpus grows in
# fuzz/corpus/resp_parser/ (seeded from fuzz/seeds/). Reproduce a finding with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run resp_parser fuzz/artifacts/resp_parser/<file>
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
mkdir -p corpus/resp_parser
echo "== cargo fuzz run resp_parser for ${secs} s"
cargo fuzz run resp_parser corpus/resp_parser seeds -- \
    -max_total_time="$secs" -max_len=4096 -print_final_stats=1
