#!/usr/bin/env bash
# CPU time per call of one broker system, split between the broker process
# and this benchmark's process (client and server sides), on
# multi_thread(2), where the fabric targets are judged.
#
#   bench/cpu-per-call.sh SYSTEM [N] [IN_FLIGHT] [RPC_BENCH_BINARY]
#
# SYSTEM is a system `rpc-bench --calls` takes (lapin-queue, ours-amqp,
# ours-amqp-no-confirms, nats-raw, ours-nats, kafka-raw, ours-kafka, ...).
# Runs `rpc-bench --calls N` and `--calls 2N` (each after the same 1,000
# warm-up calls) at IN_FLIGHT calls in flight (default 256) and prints, from
# the difference of the two runs (setup, group joins and tear-down
# cancelled): the broker's CPU (utime + stime of the process listening on
# the broker's port, from /proc) and this process's CPU (user + system) per
# call, their sum, the wall-clock time per call and the cores the two kept
# busy. N defaults to 20000.
#
# Where the two cores are saturated (AMQP at 16 and 256 in flight), calls/s
# follows the sum (Kafka at 256 keeps 1.0-1.5 cores busy, and tansu's fetch
# timing counts as well): a system that costs the broker and the process
# 10% more CPU a call makes about 10% fewer calls a second. The broker's
# CPU counts whatever else it serves meanwhile; run it on a quiet broker.
# tansu's CPU per call grows with the topics and records it holds (it keeps
# them in memory), so compare Kafka systems on brokers of the same age, or
# on a fresh one each (`.ci/kafka-broker`).
set -euo pipefail

system=${1:?usage: bench/cpu-per-call.sh SYSTEM [N] [IN_FLIGHT] [RPC_BENCH_BINARY]}
n=${2:-20000}
in_flight=${3:-256}
bin=${4:-}
root=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z $bin ]]; then
    cargo build --quiet --release -p rpc-bench --manifest-path "$root/Cargo.toml"
    bin=${CARGO_TARGET_DIR:-$root/target}/release/rpc-bench
fi

# The broker's port, from the URL the benchmark itself reads.
port_of() { local rest=${1##*@}; rest=${rest##*://}; rest=${rest%%/*}; echo "${rest##*:}"; }
case $system in
    *amqp* | lapin*) port=$(port_of "${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}") ;;
    *nats*) port=$(port_of "${NATS_URL:-nats://127.0.0.1:4222}") ;;
    *kafka*) port=$(port_of "${KAFKA_BOOTSTRAP:-127.0.0.1:19092}") ;;
    *) echo "cpu-per-call.sh: $system is not a broker system" >&2; exit 2 ;;
esac
broker=$(ss -Hltnp "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
[[ -n $broker ]] || { echo "cpu-per-call.sh: no process listens on port $port" >&2; exit 1; }

ticks=$(getconf CLK_TCK)
broker_ticks() { awk '{ print $14 + $15 }' "/proc/$broker/stat"; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Prints "broker_seconds process_seconds wall_seconds" of one run of $1 calls.
run() {
    local before after start end
    before=$(broker_ticks)
    start=$(date +%s.%N)
    if ! { TIMEFORMAT='%U %S'; time "$bin" --calls "$1" --system "$system" \
        --in-flight "$in_flight" --flavor multi >/dev/null 2>"$out/stderr"; } 2>"$out/times"; then
        cat "$out/stderr" >&2
        exit 1
    fi
    end=$(date +%s.%N)
    after=$(broker_ticks)
    awk -v t="$ticks" -v b="$((after - before))" -v s="$start" -v e="$end" \
        '{ printf "%.6f %.6f %.6f\n", b / t, $1 + $2, e - s }' "$out/times"
}

read -r b1 p1 w1 <<<"$(run "$n")"
read -r b2 p2 w2 <<<"$(run $((2 * n)))"
awk -v n="$n" -v s="$system" -v k="$in_flight" -v b="$b1 $b2" -v p="$p1 $p2" -v w="$w1 $w2" 'BEGIN {
    split(b, bs, " "); split(p, ps, " "); split(w, ws, " ")
    broker = (bs[2] - bs[1]) * 1e6 / n; process = (ps[2] - ps[1]) * 1e6 / n
    wall = (ws[2] - ws[1]) * 1e6 / n
    printf "%s, %d in flight, multi_thread(2), per call: broker %.1f us, process %.1f us, sum %.1f us; wall %.1f us (%.0f calls/s), %.2f cores busy\n",
        s, k, broker, process, broker + process, wall, 1e6 / wall, (broker + process) / wall
}'
