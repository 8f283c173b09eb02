#!/usr/bin/env bash
# Runs every unit suite of a build under valgrind memcheck: no invalid
# access, no definite leak. Ends with "N passed, N failed" (one per suite).
#   tests/memcheck.sh BUILD_DIR
# CK_FORK=no keeps each suite in one process so leaks are seen at its exit;
# children a suite starts itself (commands run by test_exec) are not traced.
set -u
build=${1:?usage: tests/memcheck.sh BUILD_DIR}
export ZTASK_BIN_DIR="$PWD/$build/bin" ZTASK_LIB_DIR="$PWD/$build/lib" ZTASK_SRC_DIR="$PWD"
export CK_FORK=no CK_DEFAULT_TIMEOUT=600
# Property loops run a tenth of their inputs (zt_loops in tests/ztest.h).
export ZTASK_TEST_VALGRIND=1
logdir="$build/memcheck-logs"
mkdir -p "$logdir"
passed=0 failed=0
for b in "$build"/tests/test_*; do
    [ -x "$b" ] || continue
    name=$(basename "$b")
    log="$logdir/$name.log"
    start=$(date +%s)
    # Valgrind does not know pidfd_open (exec falls back to polling) and
    # warns about it: not an error of ours.
    valgrind --quiet --trace-children=no --child-silent-after-fork=yes \
        --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
        --error-exitcode=99 "$b" >"$log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        printf '%-28s ok   (%ss)\n' "$name" "$(( $(date +%s) - start ))"
    else
        failed=$((failed + 1))
        printf '%-28s FAIL exit %s (%ss), log: %s\n' "$name" "$rc" "$(( $(date +%s) - start ))" "$log"
        grep -E '^==[0-9]+== (Invalid|Conditional|Use of|.*definitely lost|Syscall param)' "$log" | head -n 10 | sed 's/^/    /'
        grep -E ':[EF]:' "$log" | head -n 5 | sed 's/^/    /'
    fi
done
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
