#!/usr/bin/env bash
# Side-by-side comparison: girder against a raw tokio mpsc channel, actix, ractor,
# kameo and (when `erl` is installed) the BEAM, on the same workloads.
#
#   bench/peers/run.sh                 # 3 rounds of every workload for every system
#   bench/peers/run.sh --quick         # smaller counts (about 10x), 2 s flood
#   bench/peers/run.sh --runs 5        # rounds (medians are reported)
#   bench/peers/run.sh --install-beam  # apt-get update && apt-get install erlang-nox first (root)
#   bench/peers/run.sh --systems "girder tokio" --workloads "tell_1to1 ping_pong"
#   PEERS_WORKERS=1 bench/peers/run.sh  # tokio workers and BEAM schedulers (default 2)
#
# Each round runs every workload for every system in turn, one process per workload
# (clean RSS), rotating the order of the systems from round to round. Raw JSON lines
# go to bench/peers/results/ (gitignored); the table (medians, girder's ratio to each
# peer) is printed at the end.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

runs=3
quick=0
install_beam=0
systems="girder tokio actix ractor kameo beam"
workloads="tell_1to1 tell_2to1 request_reply ping_pong spawn idle_rss flood"
per_run_timeout=600

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --runs=*) runs="${1#*=}"; shift ;;
        --quick) quick=1; shift ;;
        --install-beam) install_beam=1; shift ;;
        --systems) systems="$2"; shift 2 ;;
        --workloads) workloads="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done

if [ "$install_beam" = 1 ] && ! command -v erl >/dev/null; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "== installing erlang-nox" >&2
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y erlang-nox
fi

command -v cargo >/dev/null || { echo "cargo not found: install a Rust toolchain (rustup) first" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 not found (the aggregator needs it)" >&2; exit 1; }

# Counts per workload: full, and --quick.
count() {
    local sys="$1" w="$2"
    if [ "$quick" = 1 ]; then
        case "$w" in
            tell_1to1|tell_2to1) echo 1000000 ;;
            request_reply|ping_pong|spawn|idle_rss) echo 100000 ;;
            flood) echo 2 ;;
        esac
        return
    fi
    case "$w" in
        tell_1to1|tell_2to1) echo 10000000 ;;
        request_reply) echo 1000000 ;;
        ping_pong) echo 500000 ;;
        spawn)
            # ractor and kameo hold ~7 KB per idle actor: 1,000,000 of them would take
            # ~7 GiB on a shared machine, so they spawn 250,000 (override:
            # SPAWN_N_HEAVY=1000000).
            case "$sys" in
                ractor|kameo) echo "${SPAWN_N_HEAVY:-250000}" ;;
                *) echo 1000000 ;;
            esac ;;
        idle_rss) echo 100000 ;;
        flood) echo 5 ;;
    esac
}

echo "== building (release)" >&2
cargo build --release --locked --quiet

have_beam=0
if [[ " $systems " == *" beam "* ]]; then
    if command -v erl >/dev/null && command -v erlc >/dev/null; then
        mkdir -p target/beam
        erlc -o target/beam beam/peers.erl
        have_beam=1
    else
        echo "== erl not found: skipping the BEAM (--install-beam installs erlang-nox)" >&2
    fi
fi

cmd_for() {
    local sys="$1" w="$2" n="$3"
    if [ "$sys" = beam ]; then
        local s="${PEERS_WORKERS:-2}"
        echo "erl -noshell +S $s:$s +P 2097152 -pa target/beam -run peers main $w $n"
    else
        echo "target/release/$sys $w $n"
    fi
}

active=()
for s in $systems; do
    [ "$s" = beam ] && [ "$have_beam" = 0 ] && continue
    active+=("$s")
done

mkdir -p results
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mode=$([ "$quick" = 1 ] && echo quick || echo full)
out="results/$stamp-$mode.jsonl"
: > "$out"
echo "== $runs round(s), $mode counts, systems: ${active[*]}; raw results: bench/peers/$out" >&2

for ((r = 0; r < runs; r++)); do
    # Rotate the systems' order each round.
    k=$(( r % ${#active[@]} ))
    order=("${active[@]:k}" "${active[@]:0:k}")
    for w in $workloads; do
        for s in "${order[@]}"; do
            n="$(count "$s" "$w")"
            c="$(cmd_for "$s" "$w" "$n")"
            if line="$(timeout "$per_run_timeout" $c 2>/dev/null | grep '^{')"; then
                echo "$line" >> "$out"
                echo "round $((r + 1))/$runs  $line" >&2
            else
                echo "round $((r + 1))/$runs  FAILED: $c" >&2
            fi
        done
    done
done

echo >&2
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB; $(rustc --version)$( [ "$have_beam" = 1 ] && echo "; Erlang/OTP $(erl -noshell -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().')" )"
echo "Command: bench/peers/run.sh --runs $runs$( [ "$quick" = 1 ] && echo ' --quick')"
echo
python3 aggregate.py "$out"
