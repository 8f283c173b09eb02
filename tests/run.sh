#!/usr/bin/env bash
# Runs the test binaries of one build and ends with "N passed, N failed".
#   tests/run.sh BUILD_DIR [unit|e2e|all]
# Each binary is a Check suite; its "Checks: N, Failures: F, Errors: E" line
# is tallied. A binary that dies without that line counts as one failure.
# The e2e suites find the programs through ZTASK_BIN_DIR.
set -u
build=${1:?usage: tests/run.sh BUILD_DIR [unit|e2e|all]}
which=${2:-all}
export ZTASK_BIN_DIR="$PWD/$build/bin"
export ZTASK_LIB_DIR="$PWD/$build/lib"
export ZTASK_SRC_DIR="$PWD"
# Sanitizer runs: any report fails the run; libzmq is uninstrumented (see
# tests/tsan.supp for why each suppression is there).
case "$build" in
  *tsan*) export TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" ;;
  *asan*) export ASAN_OPTIONS="detect_leaks=1 abort_on_error=1 ${ASAN_OPTIONS:-}"
          export UBSAN_OPTIONS="print_stacktrace=1 halt_on_error=1 ${UBSAN_OPTIONS:-}" ;;
esac
bins=()
[ "$which" = e2e ] || bins+=("$build"/tests/test_*)
[ "$which" = unit ] || bins+=("$build"/tests/e2e_test_*)
passed=0 failed=0 skipped=0
logdir="$build/test-logs"
mkdir -p "$logdir"
for b in "${bins[@]}"; do
    [ -x "$b" ] || continue
    name=$(basename "$b")
    log="$logdir/$name.log"
    start=$(date +%s)
    "$b" >"$log" 2>&1
    rc=$?
    line=$(grep -E '^[0-9]+%: Checks: [0-9]+' "$log" | tail -n 1)
    if [ -n "$line" ]; then
        n=$(sed -E 's/.*Checks: ([0-9]+).*/\1/' <<<"$line")
        f=$(sed -E 's/.*Failures: ([0-9]+).*/\1/' <<<"$line")
        e=$(sed -E 's/.*Errors: ([0-9]+).*/\1/' <<<"$line")
        passed=$((passed + n - f - e))
        failed=$((failed + f + e))
    else
        failed=$((failed + 1))
        line="no Check summary (exit $rc)"
    fi
    s=$(grep -c '^SKIP: ' "$log" 2>/dev/null || true)
    skipped=$((skipped + ${s:-0}))
    printf '%-28s %s  (%ss)\n' "$name" "$line" "$(( $(date +%s) - start ))"
    if [ $rc -ne 0 ] || ! grep -qE 'Failures: 0, Errors: 0' <<<"$line"; then
        grep -E ':[EF]:|SKIP:' "$log" | head -n 20 | sed 's/^/    /'
        echo "    (full log: $log)"
    fi
    grep -E '^SKIP: ' "$log" | sed 's/^/    /'
done
echo
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
