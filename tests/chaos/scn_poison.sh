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
LIMIT=5 # the master's default --crash-limit, not passed
THREADS=2
MS=20
records=$CHAOS_DIR/records
suspects=$CHAOS_DIR/suspects
: >"$suspects"

# No --crash-limit: the master's default (5, master.c) is what is tested.
start_master 0 --db "$CHAOS_DIR/m.db" --heartbeat-ms 200 --liveness 3
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
# Restart the dead until the job ends and every poison execution's worker
# has been seen dead (bounded: the limit per poison task, plus slack). The
# master may end the job (heartbeat timeout) before the last worker has
# finished dying, which is slow under TSan: that death is still to come.
# No polling: `ztask wait` in the background ends when the job does (exit
# 0, or 1 since the poison tasks fail; 5 after its timeout), and `wait -n`
# sleeps until it, the master, a worker or the deadline (a `sleep` started
# once the job is done) exits, whichever comes first. When it returns one
# child, bash may drop another that died meanwhile from its job table
# (later `wait -n`s say "no such job" and never return it: seen with two
# deaths at once under TSan), so `wait -n` only sleeps: who has ended is
# found with `alive` (and `wait PID` for the status) before each call.
zt wait "$job" --quiet --timeout 90 &
waiter=$!
CHAOS_PIDS+=("$waiter")
restarts=0 finished=0 timer=
# The worker processes that ran a poison execution: each must die, once.
# Not the executions themselves: a retried poison task may land beside the
# other one's first run (not a suspect yet) and one abort ends both.
poison_workers() {
    awk -v j="$job" -v p=" ${poisons[*]} " '$4 == j && index(p, " " $5 " ") { print $3 }' \
        "$records" | sort -u | wc -l
}
restart_dead() {
    local w msg p
    for w in "${names[@]}"; do
        alive "${pid[$w]}" && continue
        wait "${pid[$w]}" 2>/dev/null
        echo "${pid[$w]}" >>"$suspects"
        if [ $restarts -ge $((LIMIT * npoison + 2)) ]; then
            msg=
            for p in "${poisons[@]}"; do msg+=" index $p ran $(poison_execs "$p") times;"; done
            chaos_fail "$((restarts + 1)) worker crashes and counting:$msg crash limit $LIMIT, \
$(log_count "$MASTER_LOG" event=task_poisoned) task_poisoned lines in the master log"
        fi
        start_worker "$w" "$THREADS"
        pid[$w]=$WORKER_PID
        restarts=$((restarts + 1))
    done
}
while :; do
    alive "$MASTER_PID" || chaos_fail "the master died"
    restart_dead
    if [ $finished = 0 ] && ! alive "$waiter"; then
        wait "$waiter"
        rc=$?
        [ $rc -le 1 ] || chaos_fail "job $job did not finish (ztask wait: exit $rc): $(zt status "$job")"
        finished=1
    fi
    if [ -n "$timer" ] && ! alive "$timer"; then
        chaos_fail "30 s after the job, $restarts worker deaths for $(poison_workers) workers that ran a poison task"
    fi
    if [ $finished = 1 ]; then
        [ $restarts -lt "$(poison_workers)" ] || break
        if [ -z "$timer" ]; then
            sleep 30 &
            timer=$!
            CHAOS_PIDS+=("$timer")
        fi
    fi
    watch=("$MASTER_PID")
    for w in "${names[@]}"; do watch+=("${pid[$w]}"); done
    [ $finished = 1 ] || watch+=("$waiter")
    [ -z "$timer" ] || watch+=("$timer")
    wait -n "${watch[@]}" 2>/dev/null
done
if [ -n "$timer" ]; then
    kill "$timer" 2>/dev/null
    wait "$timer" 2>/dev/null
fi
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
