#!/usr/bin/env bash
# Scenario: a worker stopped with SIGSTOP for longer than the heartbeat
# timeout while it runs tasks, then continued. The master declares it dead
# and its tasks run elsewhere; when it wakes, its late results are recorded
# as duplicates (stats "duplicates" grows by at least what it held), and
# the job's results do not change: `ztask results` before and after the
# SIGCONT are byte-identical. It then re-registers and takes new work.
. "$(dirname "$0")/lib.sh"
chaos_begin sigstop

N=$(size 200 1000)
THREADS=2
MS=50
HB=200
LIVENESS=3
records=$CHAOS_DIR/records

start_master 0 --db "$CHAOS_DIR/m.db" --heartbeat-ms $HB --liveness $LIVENESS
start_worker steady "$THREADS"
start_worker sleeper "$THREADS"
sleeper=$WORKER_PID
sleeper_log=$WORKER_LOG
echo "$sleeper" >"$CHAOS_DIR/suspects"

submit_record job "$N" "{\"file\":\"$records\",\"ms\":$MS}" ||
    chaos_fail "submit refused: $(cat "$CHAOS_DIR/submit.out")"
echo "$job $N" >"$CHAOS_DIR/expect"

# Stop it while it holds tasks: after its first few executions are on record.
sleeper_started() { [ "$(grep -c " $sleeper " "$records" 2>/dev/null)" -ge "$1" ]; }
wait_for 20 sleeper_started 4 || chaos_fail "the sleeper never ran a task"
dup0=$(stats_field duplicates)
kill -STOP "$sleeper"
t_stop=$(now_ms)
# The master must notice: worker_lost for the sleeper.
wait_line "$MASTER_LOG" "event=worker_lost worker=sleeper" 10 ||
    chaos_fail "the master did not declare the stopped worker dead"
lost_ms=$(($(now_ms) - t_stop))
held=$(grep -o 'event=worker_lost worker=sleeper .*requeued=[0-9]*' "$MASTER_LOG" |
    head -n 1 | sed 's/.*requeued=//')
# Everything, including what the sleeper held, completes elsewhere.
wait_for 60 job_finished "$job" || chaos_fail "job $job did not finish without the sleeper"
results_of "$CHAOS_DIR/before.jsonl" "$job" || chaos_fail "results: no answer"
stopped_ms=$(($(now_ms) - t_stop))

kill -CONT "$sleeper"
# Its attempts finish and their results arrive late: duplicates.
dups_at_least() { local d; d=$(stats_field duplicates); [ "${d:-0}" -ge "$1" ]; }
wait_for 20 dups_at_least $((dup0 + held)) ||
    chaos_fail "duplicates went from $dup0 to $(stats_field duplicates), want +$held"
wait_line "$sleeper_log" "event=reregistered worker=sleeper" 20 ||
    chaos_fail "the continued worker did not register again"
results_of "$CHAOS_DIR/after.jsonl" "$job" || chaos_fail "results: no answer"
cmp -s "$CHAOS_DIR/before.jsonl" "$CHAOS_DIR/after.jsonl" ||
    chaos_fail "late results changed the job's results: $(diff "$CHAOS_DIR/before.jsonl" \
        "$CHAOS_DIR/after.jsonl" | head -n 4)"

# And it works again: a second job runs on both workers.
submit_record job2 $((THREADS * 20)) "{\"file\":\"$records\",\"ms\":$MS}" ||
    chaos_fail "second submit refused"
echo "$job2 $((THREADS * 20))" >>"$CHAOS_DIR/expect"
wait_for 60 job_finished "$job2" || chaos_fail "job $job2 did not finish"
results_of "$CHAOS_DIR/results.jsonl" "$job" "$job2" || chaos_fail "results: no answer"
after_cont=$(grep -c "\"job\":$job2,.*\"worker\":\"sleeper\"" "$CHAOS_DIR/results.jsonl")

figure "tasks" "$N"
figure "stopped for (ms)" "$stopped_ms (declared dead after $lost_ms)"
figure "tasks taken back from it" "$held"
figure "duplicates (stats)" "$dup0 -> $(stats_field duplicates)"
figure "job-2 tasks it ran after SIGCONT" "$after_cont"
[ "$held" -ge 1 ] || chaos_fail "the sleeper held no task when stopped"
[ "$after_cont" -ge 1 ] || chaos_fail "the continued worker got no new work"
check --expect "$CHAOS_DIR/expect" --results "$CHAOS_DIR/results.jsonl" --records "$records" \
    --suspects "$CHAOS_DIR/suspects" --max-extra "$held" ||
    chaos_fail "the checker found lost, duplicated or unexplained work"
stop_master
chaos_pass
