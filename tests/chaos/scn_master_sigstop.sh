#!/usr/bin/env bash
# Scenario (issue 14, item 3): the master is stopped with SIGSTOP for
# longer than the workers' liveness and hello timeout while three workers
# run a job, then continued. Its own pause is not the workers' silence: it
# must read what waits in its sockets before it judges anyone, so no
# worker is declared lost and no task that finished meanwhile runs again.
. "$(dirname "$0")/lib.sh"
chaos_begin master_sigstop

N=$(size 600 6000)
THREADS=2
MS=100
STOP_S=5
records=$CHAOS_DIR/records

start_master 0 --db "$CHAOS_DIR/m.db" --heartbeat-ms 200 --liveness 3
for w in wa wb wc; do
    start_worker "$w" "$THREADS"
    echo "$WORKER_PID" >>"$CHAOS_DIR/suspects"
done
submit_record job "$N" "{\"file\":\"$records\",\"ms\":$MS}" ||
    chaos_fail "submit refused: $(cat "$CHAOS_DIR/submit.out")"
echo "$job $N" >"$CHAOS_DIR/expect"

done_at_least() { local d; d=$(job_field "$job" done); [ "${d:-0}" -ge "$1" ]; }
wait_for 60 done_at_least $((N / 4)) || chaos_fail "the job did not start"
before=$(wc -l <"$records")
kill -STOP "$MASTER_PID"
# The pause is the scenario (not a wait for anything): 5 s, beyond the
# workers' liveness (0.6 s) and their hello timeout (2 s).
sleep "$STOP_S"
during=$(($(wc -l <"$records") - before))
kill -CONT "$MASTER_PID"
wait_for $((120 * CHAOS_SCALE)) job_finished "$job" || chaos_fail "job $job did not finish"
results_of "$CHAOS_DIR/results.jsonl" "$job" || chaos_fail "results: no answer"

lost=$(log_count "$MASTER_LOG" "event=worker_lost")
extra=$(($(wc -l <"$records") - N))
figure "tasks" "$N ($MS ms, 3 workers x $THREADS threads)"
figure "master stopped for (s)" "$STOP_S"
figure "executions started during the pause" "$during"
figure "stall the master saw" "$(grep -o 'event=master_stalled ms=[0-9]*' "$MASTER_LOG" | head -n 1)"
figure "workers declared lost" "$lost"
figure "duplicates (stats)" "$(stats_field duplicates)"
figure "extra executions" "$extra"
[ "$lost" -eq 0 ] || chaos_fail "the master declared $lost workers lost for its own pause"
check --expect "$CHAOS_DIR/expect" --results "$CHAOS_DIR/results.jsonl" --records "$records" \
    --suspects "$CHAOS_DIR/suspects" --max-extra 0 ||
    chaos_fail "the checker found lost, duplicated or unexplained work"
stop_master
chaos_pass
