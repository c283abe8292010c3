#!/usr/bin/env bash
# Self-test of scripts/slurm-local.sh against the real SLURM daemons (needs the Debian packages
# slurmctld slurmd slurm-client munge; see scripts/slurm-local.md). Takes about 15 seconds.
#  1. start a cluster in a fresh directory (timed);
#  2. a 3-task array writes one file per task, a job with --dependency=afterok on the array
#     checks all three exist; `wait` must succeed;
#  3. the same with task 1 failing: `wait` must fail, name the failed task and report the
#     dependent job as DependencyNeverSatisfied (it must not have run), and not hang;
#  4. stop; no process of the cluster may be left (zombies awaiting their reaper aside).
# Exit status 0 when every check holds. Usage: scripts/slurm-local-test.sh [DIR]
# The checks are strings evaluated later, so their single-quoted $ are intended:
# shellcheck disable=SC2016,SC2034
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
slurm_local=$here/slurm-local.sh
dir=${1:-$(mktemp -d /tmp/slurm-local-test.XXXXXX)}
fail=0
check() {
    if eval "$2"; then
        echo "ok:   $1"
    else
        echo "FAIL: $1"
        fail=1
    fi
}
ms() { date +%s%3N; }
secs() { printf '%d.%03ds' $(($1 / 1000)) $(($1 % 1000)); }

# live_procs: "PID COMM ARGS..." for every process that has not exited (zombies count as
# exited), from /proc: Debian's minimal images have no ps.
live_procs() {
    local f pid stat comm state args
    for f in /proc/[0-9]*/stat; do
        pid=${f#/proc/}
        pid=${pid%/stat}
        read -r stat <"$f" 2>/dev/null || continue
        comm=${stat#*(}
        comm=${comm%)*}
        state=${stat##*) }
        state=${state%% *}
        [ "$state" = Z ] || [ "$state" = X ] && continue
        args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
        echo "$pid $comm $args"
    done
}
stepd_before=$(live_procs | awk '$2 == "slurmstepd"' | wc -l)
trap '"$slurm_local" stop "$dir" >/dev/null 2>&1 || true' EXIT

t=$(ms)
eval "$("$slurm_local" start "$dir")"
echo "start took $(secs $(($(ms) - t)))"
check "start exported SLURM_CONF=$dir/slurm.conf" '[ "$SLURM_CONF" = "$(cd "$dir" && pwd -P)/slurm.conf" ]'

# run_case NAME FAILING_TASK: submit the array and its dependent; sets wait_rc and wait_out.
run_case() {
    local out=$dir/case-$1 array dependent
    mkdir -p "$out"
    array=$(sbatch --parsable --array=0-2 --job-name="$1-array" --output="$out/%A_%a.log" \
        --export=ALL,OUT="$out",FAILING="$2" \
        --wrap 'echo "task $SLURM_ARRAY_TASK_ID" > "$OUT/task-$SLURM_ARRAY_TASK_ID"; [ "$SLURM_ARRAY_TASK_ID" != "$FAILING" ]')
    dependent=$(sbatch --parsable --dependency="afterok:$array" --job-name="$1-check" \
        --output="$out/%j.log" --export=ALL,OUT="$out" \
        --wrap 'for i in 0 1 2; do test -f "$OUT/task-$i" || exit 1; done; touch "$OUT/checked"')
    local t0
    t0=$(ms)
    wait_rc=0
    wait_out=$(SLURM_LOCAL_WAIT_TIMEOUT=120 "$slurm_local" wait "$dir" "$array" "$dependent") || wait_rc=$?
    echo "case $1: array $array, dependent $dependent, wait took $(secs $(($(ms) - t0))), exit $wait_rc"
    echo "  ${wait_out//$'\n'/$'\n'  }"
    array_id=$array
    dependent_id=$dependent
    case_out=$out
}

run_case pass -1
check "all tasks succeed: wait exits 0" '[ "$wait_rc" -eq 0 ]'
check "one file per array task" '[ -f "$case_out/task-0" ] && [ -f "$case_out/task-1" ] && [ -f "$case_out/task-2" ]'
check "the afterok job ran after the array" '[ -f "$case_out/checked" ]'
check "wait lists 3 tasks and the dependent as COMPLETED" '[ "$(grep -c " COMPLETED 0:0 " <<<"$wait_out")" -eq 4 ]'

run_case fail 1
check "a failed task: wait exits non-zero" '[ "$wait_rc" -ne 0 ]'
check "wait names task 1 as FAILED" 'grep -q "^${array_id}_1 FAILED 1:0 " <<<"$wait_out"'
check "wait reports the dependent as DependencyNeverSatisfied" 'grep -q "^$dependent_id .* DependencyNeverSatisfied$" <<<"$wait_out"'
check "the dependent job never ran" '[ ! -e "$case_out/checked" ] && [ ! -e "$case_out/$dependent_id.log" ]'

pids=$(cat "$dir"/run/{munged,slurmctld,slurmd}.pid | cut -d' ' -f1 | tr '\n' ' ')
# still_running PID...: print the pids that are still running (zombies count as gone).
still_running() {
    local p state
    for p in "$@"; do
        state=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f1) || continue
        [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ] && echo "$p"
    done
    return 0
}
check "the three daemons run before stop (pids $pids)" '[ "$(still_running $pids | wc -l)" -eq 3 ]'
t=$(ms)
"$slurm_local" stop "$dir"
echo "stop took $(secs $(($(ms) - t)))"
trap - EXIT
# A daemon that exited but was not yet reaped by its new parent shows as a zombie (Z): gone.
check "no daemon of the cluster left (pids $pids)" '[ -z "$(still_running $pids)" ]'
check "no munged/slurmctld/slurmd with $dir in its command line left" \
    '[ -z "$(live_procs | awk -v d="$dir" "\$2 ~ /^(munged|slurmctld|slurmd)\$/ && index(\$0, d)")" ]'
check "no slurmstepd left behind" \
    '[ "$(live_procs | awk "\$2 == \"slurmstepd\"" | wc -l)" -eq "$stepd_before" ]'
check "stop is idempotent" '"$slurm_local" stop "$dir" 2>/dev/null'

if [ $fail -ne 0 ]; then
    echo "slurm-local-test: FAILED (cluster directory kept: $dir)"
    exit 1
fi
echo "slurm-local-test: all checks passed"
