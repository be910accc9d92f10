#!/usr/bin/env bash
# girder's RESP server against redis-server, measured with redis-benchmark.
#
#   bench/resp.sh                      # defaults below
#   N=200000 CLIENTS=50 PIPELINES="1 16" SUBSCRIBERS=8 bench/resp.sh
#   GIRDER_BIN="target/release/girder serve" bench/resp.sh   # no build step
#
# Builds girder (release) and runs `girder serve` (or, until that subcommand exists,
# the girder-net `serve` example) on GIRDER_PORT, and redis-server (when installed)
# on REDIS_PORT, both on 127.0.0.1, then runs the same redis-benchmark loads against
# each: PING_INLINE, PING_MBULK, SET, GET, and a pub/sub fan-out (SUBSCRIBERS
# `redis-cli subscribe` processes reading into /dev/null while redis-benchmark sends
# `PUBLISH`). Prints requests/s, p50 and p99 for both, and girder/redis.
#
# girder's default rate limits (100,000 requests/s per peer address) would throttle
# a benchmark that comes from one address: the run passes a config file raising
# them (printed below). Everything else is girder's defaults. Needs redis-tools
# (redis-cli, redis-benchmark); redis-server is optional.
#
# Everything runs on one machine: the servers and the load generator share its
# cores, so numbers are for comparing the two servers in one run, not absolutes.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

N="${N:-100000}"
CLIENTS="${CLIENTS:-50}"
PIPELINES="${PIPELINES:-1 16}"
SUBSCRIBERS="${SUBSCRIBERS:-8}"
PAYLOAD_BYTES="${PAYLOAD_BYTES:-64}"
GIRDER_PORT="${GIRDER_PORT:-17101}"
REDIS_PORT="${REDIS_PORT:-17102}"
TESTS="ping_inline,ping_mbulk,set,get"

for bin in redis-cli redis-benchmark; do
    if ! command -v "$bin" >/dev/null; then
        echo "bench/resp.sh: $bin not found (apt-get install redis-tools)" >&2
        exit 1
    fi
done

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# --- the girder binary ------------------------------------------------------------
if [[ -n "${GIRDER_BIN:-}" ]]; then
    read -ra girder <<<"$GIRDER_BIN" # e.g. "target/release/girder serve"
else
    echo "== cargo build --release (girder)" >&2
    if cargo build --release --quiet --bin girder 2>"$work/build.log" &&
        target/release/girder serve --help >/dev/null 2>&1; then
        girder=("$root/target/release/girder" serve)
    else
        echo "   (no 'girder serve' yet: using the girder-net serve example)" >&2
        cargo build --release --quiet -p girder-net --example serve
        girder=("$root/target/release/examples/serve")
    fi
fi

cat >"$work/girder.toml" <<'EOF'
# bench/resp.sh: rate limits raised so one benchmarking address is not throttled.
[rate]
per_peer_per_second = 1000000000
per_peer_burst = 1000000000
per_connection_per_second = 1000000000
per_connection_burst = 1000000000
EOF

wait_ping() {
    local port=$1
    for _ in $(seq 1 200); do
        if [[ "$(redis-cli -p "$port" ping 2>/dev/null)" == PONG ]]; then
            return 0
        fi
        sleep 0.05
    done
    echo "bench/resp.sh: nothing answers PING on port $port" >&2
    return 1
}

for port in "$GIRDER_PORT" "$REDIS_PORT"; do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then
        echo "bench/resp.sh: port $port is taken (set GIRDER_PORT / REDIS_PORT)" >&2
        exit 1
    fi
done

"${girder[@]}" --port "$GIRDER_PORT" --config "$work/girder.toml" >"$work/girder.log" 2>&1 &
pids+=($!)
wait_ping "$GIRDER_PORT"
servers=(girder)
declare -A port_of=([girder]=$GIRDER_PORT)
if command -v redis-server >/dev/null; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --logfile "$work/redis.log" &
    pids+=($!)
    wait_ping "$REDIS_PORT"
    servers+=(redis)
    port_of[redis]=$REDIS_PORT
else
    echo "   (redis-server not installed: girder alone)" >&2
fi

# results[server|test] = "rps p50 p99"
declare -A results
tests_seen=()

# Runs redis-benchmark --csv and records each row under "$label/<test>".
record() {
    local server=$1 label=$2
    shift 2
    local out
    out="$(redis-benchmark -p "${port_of[$server]}" --csv "$@" 2>"$work/bench.err")" || {
        echo "redis-benchmark failed against $server:" >&2
        cat "$work/bench.err" >&2
        exit 1
    }
    if grep -qi error <<<"$out$(cat "$work/bench.err")"; then
        echo "bench/resp.sh: errors from $server:" >&2
        echo "$out" >&2
        exit 1
    fi
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    while IFS=, read -r t rps _avg _min p50 _p95 p99 _max; do
        t="${t//\"/}"
        [[ "$t" == test ]] && continue
        t="${t%% *}"
        local key="$label ${t}"
        results["$server|$key"]="${rps//\"/} ${p50//\"/} ${p99//\"/}"
        if [[ " ${tests_seen[*]-} " != *" $key "* ]]; then
            tests_seen+=("$key")
        fi
    done <<<"$out"
}

payload="$(head -c "$PAYLOAD_BYTES" </dev/zero | tr '\0' 'x')"

for server in "${servers[@]}"; do
    port=${port_of[$server]}
    for p in $PIPELINES; do
        echo "== $server: redis-benchmark -t $TESTS -n $N -c $CLIENTS -P $p" >&2
        record "$server" "P=$p" -t "$TESTS" -n "$N" -c "$CLIENTS" -P "$p"
    done
    # Pub/sub fan-out: SUBSCRIBERS subscribers on one channel.
    subs=()
    for _ in $(seq 1 "$SUBSCRIBERS"); do
        redis-cli -p "$port" subscribe bench-fanout >/dev/null 2>&1 &
        subs+=($!)
        pids+=($!)
    done
    for _ in $(seq 1 200); do
        n="$(redis-cli -p "$port" publish bench-fanout warmup 2>/dev/null || echo 0)"
        [[ "$n" == "$SUBSCRIBERS" ]] && break
        sleep 0.05
    done
    if [[ "$n" != "$SUBSCRIBERS" ]]; then
        echo "bench/resp.sh: $server has $n of $SUBSCRIBERS subscribers" >&2
        exit 1
    fi
    for p in $PIPELINES; do
        echo "== $server: redis-benchmark -n $N -c $CLIENTS -P $p PUBLISH bench-fanout <${PAYLOAD_BYTES} B> ($SUBSCRIBERS subscribers)" >&2
        record "$server" "P=$p" -n "$N" -c "$CLIENTS" -P "$p" PUBLISH bench-fanout "$payload"
    done
    alive=0
    for s in "${subs[@]}"; do
        if kill -0 "$s" 2>/dev/null; then
            alive=$((alive + 1))
        fi
        kill "$s" 2>/dev/null || true
    done
    echo "   $server: $alive of $SUBSCRIBERS subscribers still connected after the fan-out" >&2
done

# --- the table ----------------------------------------------------------------------
echo
echo "redis-benchmark -n $N -c $CLIENTS, pipelines: $PIPELINES; PUBLISH fans out to $SUBSCRIBERS redis-cli subscribers, ${PAYLOAD_BYTES} B payload"
echo "girder: ${girder[*]} --config (rate limits raised to 1e9/s; all else default)"
if [[ " ${servers[*]} " == *" redis "* ]]; then
    echo "redis:  $(redis-server --version | awk '{print $1, $2, $3}') --save '' --appendonly no"
fi
echo "machine: $(nproc) cores, shared by the server, redis-benchmark and the subscribers"
echo
if [[ " ${servers[*]} " == *" redis "* ]]; then
    printf '| %-16s | %12s | %8s | %8s | %12s | %8s | %8s | %13s |\n' \
        test "girder rps" "p50 ms" "p99 ms" "redis rps" "p50 ms" "p99 ms" "girder/redis"
    printf '|%s|\n' "------------------|--------------|----------|----------|--------------|----------|----------|---------------"
    for key in "${tests_seen[@]}"; do
        read -r grps gp50 gp99 <<<"${results["girder|$key"]:-- - -}"
        read -r rrps rp50 rp99 <<<"${results["redis|$key"]:-- - -}"
        ratio="$(awk -v a="$grps" -v b="$rrps" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "-" }')"
        printf '| %-16s | %12s | %8s | %8s | %12s | %8s | %8s | %13s |\n' \
            "$key" "$grps" "$gp50" "$gp99" "$rrps" "$rp50" "$rp99" "$ratio"
    done
else
    printf '| %-16s | %12s | %8s | %8s |\n' test "girder rps" "p50 ms" "p99 ms"
    printf '|%s|\n' "------------------|--------------|----------|----------"
    for key in "${tests_seen[@]}"; do
        read -r grps gp50 gp99 <<<"${results["girder|$key"]}"
        printf '| %-16s | %12s | %8s | %8s |\n' "$key" "$grps" "$gp50" "$gp99"
    done
fi
