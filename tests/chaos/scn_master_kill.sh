#!/usr/bin/env bash
# Scenario: the master kill -9'd twice mid-run and restarted on the same
# database and port, while one big job runs and a submitter keeps sending
# small jobs. Every acknowledged submit survives (all its tasks, once each),
# the database passes PRAGMA integrity_check after each crash and at the
# end, and every acknowledged job completes. Submits that were in flight at
# a crash may be refused or time out; those the master committed anyway
# must be whole and complete too. Extra executions are bounded by what the
# workers held at each crash, and none repeats a task that had ended
# before a crash (the kill marks in the records).
. "$(dirname "$0")/lib.sh"
chaos_begin master_kill

N=$(size 10000 50000)
SMALL=200
THREADS=4
WORKERS=2
MS=5
db=$CHAOS_DIR/m.db
records=$CHAOS_DIR/records
expect=$CHAOS_DIR/expect
port=$(free_port_pair) || chaos_fail "no free port pair"
MFLAGS=(--db "$db" --heartbeat-ms 200 --liveness 3 --recovery-grace 1)

start_master "$port" "${MFLAGS[@]}"
start_worker wa "$THREADS"
echo "$WORKER_PID" >"$CHAOS_DIR/suspects"
start_worker wb "$THREADS"
echo "$WORKER_PID" >>"$CHAOS_DIR/suspects"
args="{\"file\":\"$records\",\"ms\":$MS,\"ends\":true}"
submit_record big "$N" "$args" || chaos_fail "submit refused: $(cat "$CHAOS_DIR/submit.out")"
echo "$big $N" >"$expect"

# The submitter: small jobs, one after another, until told to stop. It
# appends "JOB N" for each acknowledged one and counts the refused.
submitter() {
    local i rc out job refused=0
    for ((i = 0; i < 400; i++)); do
        [ -e "$CHAOS_DIR/stop-submitter" ] && break
        out=$(ZTASK_REQUEST_TIMEOUT=3 "$BIN/ztask" --master "127.0.0.1:$port" submit \
            --fn record --args "$args" --array "0-$((SMALL - 1))" 2>&1)
        rc=$?
        job=$(sed -n 's/^job \([0-9]*\):.*/\1/p' <<<"$out")
        if [ $rc -eq 0 ] && [ -n "$job" ]; then
            echo "$job $SMALL" >>"$expect"
        else
            refused=$((refused + 1))
            echo "rc=$rc $out" >>"$CHAOS_DIR/submitter.log"
        fi
        sleep 0.2 # pacing, so the big job keeps the workers busy
    done
    echo "$refused" >"$CHAOS_DIR/refused"
}
submitter &
submitter_pid=$!
CHAOS_PIDS+=("$submitter_pid")

done_at_least() { local d; d=$(job_field "$big" done); [ "${d:-0}" -ge "$1" ]; }
integrity_checks=()
for round in 1 2; do
    wait_for 60 done_at_least $((N * round / 3)) ||
        chaos_fail "the big job stalled before kill $round: $(zt status "$big" 2>&1)"
    # The mark goes on record before the kill: an end before it is work
    # done before the crash.
    echo "kill $round" >>"$records"
    kill -KILL "$MASTER_PID"
    wait "$MASTER_PID" 2>/dev/null
    ic=$(integrity "$db")
    integrity_checks+=("$ic")
    [ "$ic" = ok ] || chaos_fail "integrity_check after kill $round: $ic"
    start_master "$port" "${MFLAGS[@]}"
    figure "restart $round" "$(grep -o 'jobs=.*' "$MASTER_LOG" | head -n 1)"
done
wait_for $((120 * CHAOS_SCALE)) job_finished "$big" ||
    chaos_fail "the big job did not finish: $(zt status "$big" 2>&1)"
touch "$CHAOS_DIR/stop-submitter"
wait_for 30 eval '! alive '"$submitter_pid" || chaos_fail "the submitter did not stop"

# A submit whose reply was lost in a crash may have been committed all the
# same (Jepsen's "indeterminate"): such a job must then be whole and run
# like the others. Any job beyond the acknowledged ones must be one of the
# submits that failed, so there can be at most that many.
refused=$(cat "$CHAOS_DIR/refused")
acked=$(wc -l <"$expect")
zt jobs --json | grep -o '"job":[0-9]*' | cut -d: -f2 | sort -n >"$CHAOS_DIR/all-jobs"
cut -d' ' -f1 "$expect" | sort -n | comm -13 - "$CHAOS_DIR/all-jobs" >"$CHAOS_DIR/indeterminate"
recovered=$(wc -l <"$CHAOS_DIR/indeterminate")
[ "$recovered" -le "$refused" ] ||
    chaos_fail "$recovered jobs nobody acknowledged, but only $refused submits failed"
sed "s/\$/ $SMALL/" "$CHAOS_DIR/indeterminate" >>"$expect"
mapfile -t jobs < <(cut -d' ' -f1 "$expect")
wait_for 120 jobs_finished "$expect" || chaos_fail "a job did not finish"
results_of "$CHAOS_DIR/results.jsonl" "${jobs[@]}" || chaos_fail "results: no answer"

figure "big job tasks" "$N"
figure "small jobs acknowledged" "$((acked - 1)) x $SMALL tasks"
figure "submits not acknowledged" "$refused (committed all the same: $recovered)"
figure "master kills" "2"
figure "integrity_check after kills" "${integrity_checks[*]}"
figure "duplicates (stats since restart)" "$(stats_field duplicates)"
# Both workers are suspects: a crash of the master can cut any attempt
# short. What may run twice per crash: the attempts the workers held, so
# the bound is WORKERS * THREADS per crash. A task that had ended before
# a crash never runs again: its result, lost with the master (read and
# not committed, or still in its socket), goes again when the worker
# registers with the restarted master (the hello reply's "resend",
# docs/protocol.md 7).
check --expect "$expect" --results "$CHAOS_DIR/results.jsonl" --records "$records" \
    --suspects "$CHAOS_DIR/suspects" --max-extra $((2 * WORKERS * THREADS)) \
    --max-ended-before-kill 0 ||
    chaos_fail "the checker found lost, duplicated or unexplained work"
stop_master
ic=$(integrity "$db")
figure "integrity_check at the end" "$ic"
[ "$ic" = ok ] || chaos_fail "integrity_check at the end: $ic"
chaos_pass
