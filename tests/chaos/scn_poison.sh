#!/usr/bin/env bash
# Scenario: poison tasks that kill their worker every time (the record
# function calls abort()) in a job of ordinary tasks: one aborts at once,
# before its worker can report that it started; the other after 300 ms,
# once the master knows it runs. The harness restarts every worker that
# dies. After the crash limit (default 5) each poison task is failed with
# an error naming the limit, it ran exactly that many times, every other
# task is done once, and the workers stop dying.
# CHAOS_POISON_EARLY=0 leaves the early one out.
. "$(dirname "$0")/lib.sh"
chaos_begin poison

N=$(size 400 4000)
EARLY=${CHAOS_POISON_EARLY:-1}
POISON=17
LATE=117
LIMIT=5
THREADS=2
MS=20
records=$CHAOS_DIR/records
suspects=$CHAOS_DIR/suspects
: >"$suspects"

start_master 0 --db "$CHAOS_DIR/m.db" --heartbeat-ms 200 --liveness 3 --crash-limit $LIMIT
names=(pa pb)
declare -A pid=()
for w in "${names[@]}"; do
    start_worker "$w" "$THREADS"
    pid[$w]=$WORKER_PID
done
args="\"file\":\"$records\",\"ms\":$MS,\"late_crash_index\":$LATE,\"late_crash_ms\":300"
poisons=("$LATE")
if [ "$EARLY" = 1 ]; then
    args+=",\"crash_index\":$POISON"
    poisons+=("$POISON")
fi
submit_record job "$N" "{$args}" ||
    chaos_fail "submit refused: $(cat "$CHAOS_DIR/submit.out")"
echo "$job $N" >"$CHAOS_DIR/expect"

npoison=${#poisons[@]}
poison_execs() { awk -v j="$job" -v i="$1" '$4 == j && $5 == i' "$records" | wc -l; }
# Restart the dead until the job ends (bounded: the limit per poison task,
# plus slack).
restarts=0
deadline=$(($(now_ms) + 90000))
while ! job_finished "$job"; do
    [ "$(now_ms)" -lt "$deadline" ] || chaos_fail "job $job did not finish: $(zt status "$job")"
    if [ $restarts -gt $((LIMIT * npoison + 2)) ]; then
        msg=
        for p in "${poisons[@]}"; do msg+=" index $p ran $(poison_execs "$p") times;"; done
        chaos_fail "$restarts worker crashes and counting:$msg crash limit $LIMIT, \
$(log_count "$MASTER_LOG" event=task_poisoned) task_poisoned lines in the master log"
    fi
    for w in "${names[@]}"; do
        if ! alive "${pid[$w]}"; then
            wait "${pid[$w]}" 2>/dev/null
            echo "${pid[$w]}" >>"$suspects"
            start_worker "$w" "$THREADS"
            pid[$w]=$WORKER_PID
            restarts=$((restarts + 1))
        fi
    done
    sleep 0.1 # polling the workers' liveness
done
results_of "$CHAOS_DIR/results.jsonl" "$job" || chaos_fail "results: no answer"
poisoned=$(log_count "$MASTER_LOG" "event=task_poisoned")
figure "tasks" "$N (poison indexes ${poisons[*]})"
figure "worker crashes (restarts)" "$restarts"
figure "tasks poisoned (master log)" "$poisoned"
popts=()
for p in "${poisons[@]}"; do
    popts+=(--poison "$job:$p")
    figure "index $p: executions" "$(poison_execs "$p")"
    figure "index $p: error" "$(grep "\"index\":$p," "$CHAOS_DIR/results.jsonl" |
        grep -o '"error":"[^"]*"')"
done
figure "duplicates (stats)" "$(stats_field duplicates)"
# Every crash kills the THREADS - 1 neighbours running beside the poison.
check --expect "$CHAOS_DIR/expect" --results "$CHAOS_DIR/results.jsonl" --records "$records" \
    --suspects "$suspects" "${popts[@]}" --poison-error "crash limit" \
    --max-extra $((restarts * (THREADS - 1))) ||
    chaos_fail "the checker found lost, duplicated or unexplained work"
for p in "${poisons[@]}"; do
    [ "$(poison_execs "$p")" -eq $LIMIT ] ||
        chaos_fail "poison index $p ran $(poison_execs "$p") times, want $LIMIT"
done
[ "$restarts" -le $((LIMIT * npoison)) ] || chaos_fail "$restarts worker crashes, want <= $((LIMIT * npoison))"
# The workers stay up now: a second job runs with no crash.
submit_record job2 100 "{\"file\":\"$records\",\"ms\":1}" || chaos_fail "second submit refused"
wait_for 30 job_finished "$job2" || chaos_fail "job $job2 did not finish"
for w in "${names[@]}"; do alive "${pid[$w]}" || chaos_fail "worker $w died after the poison"; done
stop_master
chaos_pass
