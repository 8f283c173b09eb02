#!/usr/bin/env bash
# Runs the fault-storm scenarios of one build and ends with
# "N passed, N failed" (", N skipped" when some were skipped).
#
#   tests/chaos/run.sh BUILD_DIR            every scenario (`make chaos`)
#   tests/chaos/run.sh BUILD_DIR soak       the soak alone (`make soak`)
#   tests/chaos/run.sh BUILD_DIR NAME...    the named scenarios (scn_NAME.sh)
#
# CHAOS_SCALE=10 runs the full sizes of issue 5 (CI size by default);
# CHAOS_KEEP=1 keeps every scenario's directory. Each scenario's figures
# and verdict go to stdout; its stderr (daemon noise, job-control messages)
# to BUILD_DIR/chaos-logs/NAME.err. A scenario gets at most
# CHAOS_TIMEOUT seconds (default 300 x scale), then it is stopped.
set -u
build=${1:?usage: tests/chaos/run.sh BUILD_DIR [soak | NAME...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
export CHAOS_BUILD
CHAOS_BUILD=$(cd "$build" && pwd)
export CHAOS_SCALE=${CHAOS_SCALE:-1}
limit=${CHAOS_TIMEOUT:-$((300 * CHAOS_SCALE))}
# Sanitizer builds: the suppressions `make tsan` uses (libzmq is not
# instrumented), and more time.
case $CHAOS_BUILD in
*tsan*)
    export TSAN_OPTIONS="suppressions=$here/../tsan.supp halt_on_error=1 ${TSAN_OPTIONS:-}"
    limit=$((limit * 3))
    ;;
*asan*) limit=$((limit * 2)) ;;
esac
. "$here/lib.sh" # SANITIZER_MARKS, sanitizer_grep

# The order: the checker's self-test, quick single-fault scenarios, then
# the storms.
all=(checker sigstop master_sigstop busy_requeue recall poison disk_full worker_kill orphans master_kill restart_results submit_lost hostile_worker hostile_master)
if [ $# -eq 0 ]; then
    names=("${all[@]}")
elif [ "$1" = soak ]; then
    names=(soak)
    limit=${CHAOS_TIMEOUT:-$((3600 * CHAOS_SCALE))}
else
    names=("$@")
fi

logs=$CHAOS_BUILD/chaos-logs
mkdir -p "$logs"
passed=0 failed=0 skipped=0
failures=()
t0=$(date +%s)
for name in "${names[@]}"; do
    script=$here/scn_$name.sh
    if [ ! -f "$script" ]; then
        echo "FAIL: $name: no scenario $script"
        failed=$((failed + 1))
        failures+=("$name")
        continue
    fi
    start=$(date +%s)
    timeout --signal=TERM --kill-after=20 "$limit" bash "$script" 2>"$logs/$name.err" |
        tee "$logs/$name.out"
    rc=${PIPESTATUS[0]}
    # A sanitizer report from a program whose stderr is not a daemon log
    # (the CLI, chaos-storm, chaos-check) fails a scenario that passed.
    if [ "$rc" -eq 0 ] && sanitizer_grep "$logs/$name.err" >/dev/null; then
        echo "FAIL: $name: sanitizer report in $logs/$name.err" | tee -a "$logs/$name.out"
        rc=1
    fi
    secs=$(($(date +%s) - start))
    case $rc in
    0) passed=$((passed + 1)) ;;
    77) skipped=$((skipped + 1)) ;;
    124 | 137)
        echo "FAIL: $name: still running after ${limit}s, stopped"
        failed=$((failed + 1))
        failures+=("$name")
        ;;
    *)
        grep -q '^FAIL: ' "$logs/$name.out" || echo "FAIL: $name: exit $rc (stderr: $logs/$name.err)"
        failed=$((failed + 1))
        failures+=("$name")
        ;;
    esac
    echo "   ($name: ${secs}s)"
    echo
done
echo "chaos: $(($(date +%s) - t0))s at scale $CHAOS_SCALE${failures:+; failed: ${failures[*]}}"
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
