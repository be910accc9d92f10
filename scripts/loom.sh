#!/usr/bin/env bash
# Loom models of girder's concurrent core: the mailbox queue
# (crates/girder/src/mailbox/queue.rs) and the process table
# (crates/girder/src/process/table.rs).
#
# `--cfg girder_loom` swaps the crate's Mutex, RwLock and atomics (src/sync.rs) for
# loom's model-checked ones. The cfg is not `loom`, so tokio is built normally. A
# separate target directory keeps the ordinary build's artifacts intact.
#
# Usage: scripts/loom.sh [TEST-NAME-FILTER]   (default: every loom model)
# Environment: LOOM_MAX_PREEMPTIONS (default 3), any other LOOM_* variable.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="${RUSTFLAGS:-} --cfg girder_loom"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
exec cargo test -p girder --lib --release -- "${1:-loom}" --test-threads=2
