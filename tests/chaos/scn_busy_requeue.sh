#!/usr/bin/env bash
# Scenario (issue 14, item 2): a long job of short tasks keeps every worker
# busy (prefetch 2: a worker is never idle before the job's end) when one
# of three workers is stopped with SIGSTOP. The master declares it lost and
# requeues what it held as suspects; they must run on the busy workers'
# next free threads, not wait for the job's end (the old rule sent a
# suspect only to an idle worker). The record file is in start order, so
# "started at line L of T" says how much of the job was still to come.
. "$(dirname "$0")/lib.sh"
chaos_begin busy_requeue

N=$(size 1200 6000)
THREADS=2
MS=40
records=$CHAOS_DIR/records

start_master 0 --db "$CHAOS_DIR/m.db" --heartbeat-ms 200 --liveness 3 --prefetch 2
start_worker wa "$THREADS"
start_worker wb "$THREADS"
start_worker sleeper "$THREADS"
sleeper=$WORKER_PID
echo "$sleeper" >"$CHAOS_DIR/suspects"

submit_record job "$N" "{\"file\":\"$records\",\"ms\":$MS}" ||
    chaos_fail "submit refused: $(cat "$CHAOS_DIR/submit.out")"
echo "$job $N" >"$CHAOS_DIR/expect"

sleeper_started() { [ "$(grep -c " $sleeper " "$records" 2>/dev/null)" -ge "$1" ]; }
wait_for 30 sleeper_started 10 || chaos_fail "the sleeper never ran a task"
kill -STOP "$sleeper"
wait_line "$MASTER_LOG" "event=worker_lost worker=sleeper" 10 ||
    chaos_fail "the master did not declare the stopped worker lost"
lost_at=$(wc -l <"$records")
held=$(grep -o 'event=worker_lost worker=sleeper .*requeued=[0-9]*' "$MASTER_LOG" |
    head -n 1 | sed 's/.*requeued=//')
wait_for $((120 * CHAOS_SCALE)) job_finished "$job" || chaos_fail "job $job did not finish"
kill -CONT "$sleeper"
results_of "$CHAOS_DIR/results.jsonl" "$job" || chaos_fail "results: no answer"

# Reruns: executions with attempt >= 2 (field 2), in start order.
total=$(wc -l <"$records")
awk '$2 >= 2 { print NR }' "$records" >"$CHAOS_DIR/reruns"
reruns=$(wc -l <"$CHAOS_DIR/reruns")
last=$(tail -n 1 "$CHAOS_DIR/reruns")
figure "tasks" "$N ($MS ms, 3 workers x $THREADS threads, prefetch 2)"
figure "executions on record when the loss was seen" "$lost_at"
figure "tasks taken back (suspects)" "$held"
figure "reruns" "$reruns, started at lines $(tr '\n' ' ' <"$CHAOS_DIR/reruns")of $total"
figure "executions started after the last rerun" "$((total - ${last:-$total}))"
[ "$held" -ge 1 ] || chaos_fail "the sleeper held no task when stopped"
[ "$reruns" -ge 1 ] || chaos_fail "no task of the sleeper ran again"
# Within a few task durations of the loss: at most one task per thread of
# each busy worker (and its prefetch) ahead of them, with hundreds to go.
[ "$last" -le $((lost_at + 200)) ] && [ "$last" -lt $((total - N / 4)) ] ||
    chaos_fail "the last rerun started at line $last of $total ($lost_at when the loss was seen): it waited"
check --expect "$CHAOS_DIR/expect" --results "$CHAOS_DIR/results.jsonl" --records "$records" \
    --suspects "$CHAOS_DIR/suspects" --max-extra "$held" ||
    chaos_fail "the checker found lost, duplicated or unexplained work"
stop_master
chaos_pass
