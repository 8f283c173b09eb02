#!/usr/bin/env bash
# Scenario (issue 14, item 3): the master is kill -9'd twice while two
# workers run a long job of short tasks, stays down a moment (the workers
# finish what they hold meanwhile and keep the results), and is restarted
# on the same database and port. Those results reach the restarted master
# before or just after their workers register again: they must count, not
# run again. Many of the tasks were sent less than a second before the
# crash, so their assignment was never written (ASSIGN_WRITE_MS); the
# attempt in the result says which run it is. Extra executions may come
# only from results the dead master had read but not committed, or that
# were in its socket buffers when it died.
. "$(dirname "$0")/lib.sh"
chaos_begin restart_results

N=$(size 2000 20000)
THREADS=4
WORKERS=2
MS=100
DOWN_S=0.5
db=$CHAOS_DIR/m.db
records=$CHAOS_DIR/records
port=$(free_port_pair) || chaos_fail "no free port pair"
MFLAGS=(--db "$db" --heartbeat-ms 200 --liveness 3 --recovery-grace 2)

start_master "$port" "${MFLAGS[@]}"
start_worker wa "$THREADS"
echo "$WORKER_PID" >"$CHAOS_DIR/suspects"
start_worker wb "$THREADS"
echo "$WORKER_PID" >>"$CHAOS_DIR/suspects"
submit_record job "$N" "{\"file\":\"$records\",\"ms\":$MS}" ||
    chaos_fail "submit refused: $(cat "$CHAOS_DIR/submit.out")"
echo "$job $N" >"$CHAOS_DIR/expect"

done_at_least() { local d; d=$(job_field "$job" done); [ "${d:-0}" -ge "$1" ]; }
kept=0 claims=0 unrecorded=0
for round in 1 2; do
    wait_for $((60 * CHAOS_SCALE)) done_at_least $((N * round / 3)) ||
        chaos_fail "the job stalled before kill $round: $(zt status "$job" 2>&1)"
    kill -KILL "$MASTER_PID"
    wait "$MASTER_PID" 2>/dev/null
    # Down for a moment (the scenario's cadence, not a wait for anything):
    # the workers finish the tasks they hold and keep the results.
    sleep "$DOWN_S"
    start_master "$port" "${MFLAGS[@]}"
    wait_line "$MASTER_LOG" "event=worker_registered" 20 2 ||
        chaos_fail "the workers did not register again after restart $round"
done
wait_for $((120 * CHAOS_SCALE)) job_finished "$job" ||
    chaos_fail "the job did not finish: $(zt status "$job" 2>&1)"
results_of "$CHAOS_DIR/results.jsonl" "$job" || chaos_fail "results: no answer"
for log in "$CHAOS_DIR"/master.*.log; do
    kept=$((kept + $(log_count "$log" "event=result_kept")))
    claims=$((claims + $(log_count "$log" "claimed=") - $(log_count "$log" "claimed=0")))
    unrecorded=$((unrecorded + $(log_count "$log" "event=claim_unrecorded")))
done
extra=$(($(wc -l <"$records") - N))
figure "tasks" "$N ($MS ms, $WORKERS workers x $THREADS threads)"
figure "master kills (down ${DOWN_S}s each)" "2"
figure "results kept for a hello (lines)" "$kept"
figure "hellos that claimed tasks" "$claims"
figure "claims of unwritten assignments" "$unrecorded"
figure "duplicates (stats since restart)" "$(stats_field duplicates)"
figure "extra executions" "$extra"
# Per crash: the results the master had read but not committed (one
# grouped commit) and those in its socket buffers when it died, at most
# what the workers held: WORKERS * THREADS.
check --expect "$CHAOS_DIR/expect" --results "$CHAOS_DIR/results.jsonl" --records "$records" \
    --suspects "$CHAOS_DIR/suspects" --max-extra $((2 * WORKERS * THREADS)) ||
    chaos_fail "the checker found lost, duplicated or unexplained work"
stop_master
chaos_pass
