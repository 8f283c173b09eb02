#!/usr/bin/env bash
# Scenario: the checker's self-test (no daemon, well under a second). Every
# other scenario trusts chaos-check, so it must be seen to fail: on crafted
# inputs (job 7 of 3 tasks, ids 101-103, each run once and recorded) it
# must PASS when they are clean, and FAIL, with the right counter, for a
# lost task (no result, still running, failed), a duplicate (row, task id),
# an unexpected result or execution, extra executions beyond --max-extra,
# an unexplained extra execution, a phantom result, a poison task that did
# not fail, a malformed record, and (with kill marks and end lines) a task
# that ran again though it had ended before the kill, where one that ran
# across the kill passes; a usage error exits 2.
. "$(dirname "$0")/lib.sh"
chaos_begin checker

npass=0 nfail=0
# clean DIR: the inputs of a clean run.
clean() {
    mkdir -p "$1"
    echo "7 3" >"$1/expect"
    : >"$1/suspects"
    cat >"$1/records" <<'EOF'
101 1 500 7 0
102 1 500 7 1
103 1 501 7 2
EOF
    cat >"$1/results" <<'EOF'
{"task":101,"job":7,"index":0,"status":"done","attempts":1,"result":[0,1,500]}
{"task":102,"job":7,"index":1,"status":"done","attempts":1,"result":[1,1,500]}
{"task":103,"job":7,"index":2,"status":"done","attempts":1,"result":[2,1,501]}
EOF
}

# killed DIR: index 0 ran twice, first on worker 400 that was killed.
killed() {
    clean "$1"
    echo 400 >"$1/suspects"
    sed -i '1s/.*/101 1 400 7 0\n101 2 500 7 0/' "$1/records"
    sed -i '1s/"attempts":1,"result":\[0,1,500\]/"attempts":2,"result":[0,2,500]/' "$1/results"
}

# expect NAME EXIT SUMMARY_TEXT [chaos-check options...]: runs the checker
# on $CHAOS_DIR/NAME; its exit code must be EXIT and its output must hold
# SUMMARY_TEXT (a fixed string, e.g. "lost=1 ").
expect() {
    local name=$1 want=$2 text=$3 d=$CHAOS_DIR/$1 out rc
    shift 3
    out=$("$TOOLS/chaos-check" --name "$name" --expect "$d/expect" --results "$d/results" \
        --records "$d/records" --suspects "$d/suspects" "$@" 2>&1)
    rc=$?
    echo "$out" >"$d/out"
    if [ $rc -ne "$want" ] || ! grep -qF -- "$text" <<<"$out"; then
        echo "$out" | sed 's/^/   /'
        chaos_fail "case $name: exit $rc, want $want with \"$text\""
    fi
    if [ "$want" -eq 0 ]; then npass=$((npass + 1)); else nfail=$((nfail + 1)); fi
}

clean "$CHAOS_DIR/clean"
expect clean 0 "lost=0 duplicated=0 unexpected=0 extra=0/0 unexplained=0 phantom=0 => PASS"

killed "$CHAOS_DIR/killed"
expect killed 0 "extra=1/1 unexplained=0 phantom=0 => PASS" --max-extra 1

clean "$CHAOS_DIR/missing"
sed -i '3d' "$CHAOS_DIR/missing/results"
expect missing 1 "lost=1 " --max-extra 9

clean "$CHAOS_DIR/unfinished"
sed -i '3s/"done"/"running"/' "$CHAOS_DIR/unfinished/results"
expect unfinished 1 "lost=1 " --max-extra 9

clean "$CHAOS_DIR/failed"
sed -i '3s/"done"/"failed"/' "$CHAOS_DIR/failed/results"
expect failed 1 "lost=1 " --max-extra 9

clean "$CHAOS_DIR/dup_row"
sed -n 2p "$CHAOS_DIR/dup_row/results" >>"$CHAOS_DIR/dup_row/results"
expect dup_row 1 "duplicated=2 " --max-extra 9 # the row and its task id

clean "$CHAOS_DIR/dup_id"
sed -i '3s/"task":103/"task":101/' "$CHAOS_DIR/dup_id/results"
expect dup_id 1 "duplicated=1 " --max-extra 9

clean "$CHAOS_DIR/unexpected_result"
echo '{"task":104,"job":7,"index":3,"status":"done","attempts":1,"result":[3,1,500]}' \
    >>"$CHAOS_DIR/unexpected_result/results"
expect unexpected_result 1 "unexpected=1 " --max-extra 9

clean "$CHAOS_DIR/unexpected_exec"
echo "201 1 500 8 0" >>"$CHAOS_DIR/unexpected_exec/records"
expect unexpected_exec 1 "unexpected=1 " --max-extra 9

killed "$CHAOS_DIR/over_bound"
expect over_bound 1 "extra=1/0 unexplained=0 phantom=0 => FAIL"

killed "$CHAOS_DIR/unexplained"
: >"$CHAOS_DIR/unexplained/suspects"
expect unexplained 1 "unexplained=1 " --max-extra 9

clean "$CHAOS_DIR/phantom"
sed -i '2s/\[1,1,500\]/[1,1,999]/' "$CHAOS_DIR/phantom/results"
expect phantom 1 "phantom=1 " --max-extra 9

clean "$CHAOS_DIR/poison_done"
expect poison_done 1 "lost=1 " --poison 7:1 --poison-error "crash limit"

clean "$CHAOS_DIR/poison_failed"
sed -i '2s/.*/{"task":102,"job":7,"index":1,"status":"failed","attempts":1,"error":"its worker died 5 times while running it (crash limit 5)"}/' \
    "$CHAOS_DIR/poison_failed/results"
expect poison_failed 0 "failed as expected 1/1" --poison 7:1 --poison-error "crash limit"

clean "$CHAOS_DIR/malformed"
echo "101 1 500" >>"$CHAOS_DIR/malformed/records"
expect malformed 1 "malformed lines" --max-extra 9

# Index 0's first execution ended before the kill mark, then ran again.
killed "$CHAOS_DIR/ended_before_kill"
sed -i '1s/.*/101 1 400 7 0\nend 101 1 400 7 0\nkill 1/' "$CHAOS_DIR/ended_before_kill/records"
expect ended_before_kill 1 "ended_before_kill=1 => FAIL" --max-extra 1 --max-ended-before-kill 0

# ... and ran across it: within the same bounds.
killed "$CHAOS_DIR/across_kill"
sed -i '1s/.*/101 1 400 7 0\nkill 1\nend 101 1 400 7 0/' "$CHAOS_DIR/across_kill/records"
expect across_kill 0 "ended_before_kill=0 => PASS" --max-extra 1 --max-ended-before-kill 0

clean "$CHAOS_DIR/end_unstarted"
echo "end 101 1 999 7 0" >>"$CHAOS_DIR/end_unstarted/records"
expect end_unstarted 1 "malformed lines" --max-extra 9

clean "$CHAOS_DIR/usage"
out=$("$TOOLS/chaos-check" --expect "$CHAOS_DIR/usage/expect" 2>&1)
[ $? -eq 2 ] || chaos_fail "case usage: no --results did not exit 2: $out"

figure "cases" "$npass passed as they must, $nfail failed as they must, 1 usage error"
chaos_pass
