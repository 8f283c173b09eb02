#!/usr/bin/env bash
# Scenario: a worker kill -9'd every 2 s and restarted, under a job of N
# record tasks (CI 20,000; full 50,000). Lost 0, each task exactly one
# recorded result, extra executions within 2 x threads + prefetch per kill
# (what ran, what was queued, the results held back to share a report) and
# each one on a task that a killed worker had started.
#
# The victim is restarted alternately under the same name (the master must
# take back what the dead process held when its successor says hello) and
# under a new one (the master must notice the silence).
. "$(dirname "$0")/lib.sh"
chaos_begin worker_kill

N=$(size 20000 50000)
THREADS=4
PREFETCH=2
# 8 ms a task on 8 threads: the job lasts ~25 s at CI size, so about a
# dozen kills land while it runs.
MS=8
MAX_KILLS=$((N / 1000 + 10))

start_master 0 --db "$CHAOS_DIR/m.db" --heartbeat-ms 200 --liveness 3 --lease 5 \
    --prefetch "$PREFETCH"
start_worker steady "$THREADS"
start_worker victim "$THREADS"
victim=$WORKER_PID
records=$CHAOS_DIR/records
suspects=$CHAOS_DIR/suspects
: >"$suspects"

submit_record job "$N" "{\"file\":\"$records\",\"ms\":$MS}" ||
    chaos_fail "submit refused: $(cat "$CHAOS_DIR/submit.out")"
echo "$job $N" >"$CHAOS_DIR/expect"
t0=$(now_ms)

kills=0
while [ $kills -lt $MAX_KILLS ] && ! job_finished "$job"; do
    sleep 2 # the kill cadence: deliberate, not a synchronisation
    job_finished "$job" && break
    alive "$MASTER_PID" || chaos_fail "the master died"
    kill -KILL "$victim" 2>/dev/null
    wait "$victim" 2>/dev/null
    echo "$victim" >>"$suspects"
    kills=$((kills + 1))
    if [ $((kills % 2)) -eq 1 ]; then
        start_worker victim "$THREADS"
    else
        start_worker "victim-$kills" "$THREADS"
    fi
    victim=$WORKER_PID
done
wait_for $((120 * CHAOS_SCALE)) job_finished "$job" ||
    chaos_fail "job $job did not finish: $(zt status "$job" 2>&1)"
secs=$((($(now_ms) - t0) / 1000))

results_of "$CHAOS_DIR/results.jsonl" "$job" || chaos_fail "results: the master did not answer"
figure "tasks" "$N"
figure "job time (s)" "$secs"
figure "worker kills" "$kills"
figure "duplicates (master stats)" "$(stats_field duplicates)"
figure "master VmHWM (kB)" "$(rss_kb "$MASTER_PID" VmHWM)"
[ $kills -ge 3 ] || chaos_fail "only $kills kills landed while the job ran: make the tasks longer"
# Per kill: what its threads were running and what its queue held, and the
# results its session still held back to share a report (up to 5 ms, at
# most one a thread: worker/session.c s_result_until), which die with it.
check --expect "$CHAOS_DIR/expect" --results "$CHAOS_DIR/results.jsonl" --records "$records" \
    --suspects "$suspects" --max-extra $((kills * (2 * THREADS + PREFETCH))) ||
    chaos_fail "the checker found lost, duplicated or unexplained work"
stop_master
chaos_pass
