#!/usr/bin/env bash
# Instructions per call of ours-mem (or the system RPC_BENCH_ARGS names with
# `--system`), current_thread runtime, 1 call in flight (or IN_FLIGHT),
# counted by callgrind: deterministic where wall-clock timing is noisy.
#
#   bench/instructions.sh [N] [RPC_BENCH_BINARY]
#
# Builds rpc-bench (release) unless a binary is given, runs it under
# `valgrind --tool=callgrind` once with `--calls N` and once with
# `--calls 2N` (each after the same 1,000 warm-up calls), and prints
# (total(2N) - total(N)) / N: one call's instructions, setup, warm-up and
# tear-down cancelled. N defaults to 20000. Extra rpc-bench arguments go in
# RPC_BENCH_ARGS (say `--no-subscriber`, or `--system ours-nats` or
# `--system ours-amqp` to count a NATS or AMQP system: this process only,
# client and server sides, not the broker), the calls in
# flight in IN_FLIGHT (default 1).
#
# With CACHE_SIM=1 it runs `valgrind --tool=cachegrind` with its cache and
# branch simulation instead (this machine's 32 KiB L1 caches) and prints,
# per call, the instructions, L1 instruction-cache misses (I1mr), L1 data
# misses (D1mr, D1mw) and mispredicted conditional and indirect branches
# (Bcm, Bim): where two systems' wall-clock ratio differs from their
# instruction ratio, these say why.
set -euo pipefail

n=${1:-20000}
bin=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z $bin ]]; then
    cargo build --quiet --release -p rpc-bench --manifest-path "$root/Cargo.toml"
    target=${CARGO_TARGET_DIR:-$root/target}
    bin=$target/release/rpc-bench
fi
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind not found" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Per-call events of cachegrind's simulation (CACHE_SIM=1).
if [[ ${CACHE_SIM:-0} == 1 ]]; then
    for calls in "$n" $((2 * n)); do
        # shellcheck disable=SC2086 # RPC_BENCH_ARGS is a list of words.
        valgrind --tool=cachegrind --cache-sim=yes --branch-sim=yes \
            --cachegrind-out-file="$out/cachegrind.$calls" \
            "$bin" --calls "$calls" --in-flight "${IN_FLIGHT:-1}" --flavor current ${RPC_BENCH_ARGS:-} \
            >/dev/null 2>"$out/valgrind.$calls" || { cat "$out/valgrind.$calls" >&2; exit 1; }
    done
    echo "calls: $n and $((2 * n)) (${RPC_BENCH_ARGS:-ours-mem}, current_thread, ${IN_FLIGHT:-1} in flight)"
    awk -v n="$n" '
        /^events:/ { for (i = 2; i <= NF; i++) name[i] = $i }
        /^summary:/ { run++; for (i = 2; i <= NF; i++) total[run, i] = $i; fields = NF }
        END {
            line = "per call:"
            for (i = 2; i <= fields; i++)
                if (name[i] ~ /^(Ir|I1mr|D1mr|D1mw|Bcm|Bim)$/)
                    line = line sprintf(" %s %.1f", name[i], (total[2, i] - total[1, i]) / n)
            print line
        }' "$out/cachegrind.$n" "$out/cachegrind.$((2 * n))"
    exit 0
fi

# The total instructions of one run of `--calls $1`.
count() {
    local file=$out/callgrind.$1
    # shellcheck disable=SC2086 # RPC_BENCH_ARGS is a list of words.
    valgrind --tool=callgrind --callgrind-out-file="$file" \
        "$bin" --calls "$1" --in-flight "${IN_FLIGHT:-1}" --flavor current ${RPC_BENCH_ARGS:-} \
        >/dev/null 2>"$out/valgrind.$1" || { cat "$out/valgrind.$1" >&2; exit 1; }
    awk '/^(summary|totals):/ { print $2; exit }' "$file"
}

once=$(count "$n")
twice=$(count $((2 * n)))
echo "calls: $n and $((2 * n)) (${RPC_BENCH_ARGS:-ours-mem}, current_thread, ${IN_FLIGHT:-1} in flight)"
echo "instructions: $once and $twice"
echo "instructions per call: $(( (twice - once) / n ))"
