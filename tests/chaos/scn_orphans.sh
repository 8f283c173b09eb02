#!/usr/bin/env bash
# Scenario: no process of a task outlives its worker. A job of N shell
# tasks (CI 40, full 200), each a shell with a child and a grandchild that
# sleep 2.5 s (--timeout 4), runs on a steady worker and a victim worker
# (3 threads); the victim is kill -9'd K times (CI 8, full 30) while it
# runs tasks, every third time together with its reaper, and restarted.
# Each task writes the pid of its worker and its three pids to a file of
# its own when it starts. Counted after each kill: the processes of the
# killed worker's tasks still alive 1 s after the kill (its reaper alive)
# or 1 s after the next worker's start (its reaper killed too: the next
# worker on the host sweeps). Passes when both counts are 0 and the job
# completes with every task done.
. "$(dirname "$0")/lib.sh"
chaos_begin orphans

N=$(size 40 200)
KILLS=$(size 8 30)
THREADS=3
OUTLIVE_MS=1000
fam=$CHAOS_DIR/fam
state=$CHAOS_DIR/state
mkdir -p "$fam"

# The master gives a requeued task to an idle worker, often the restarted
# victim, which is then killed under it again: no crash limit here.
start_master 0 --db "$CHAOS_DIR/m.db" --heartbeat-ms 200 --liveness 3 --prefetch 0 \
    --crash-limit 100
start_worker steady 2 --state-dir "$state"
start_worker victim "$THREADS" --state-dir "$state"
victim=$WORKER_PID
victim_log=$WORKER_LOG

# $PPID of the task's shell is the worker (the worker's clone is its parent).
script="d='$fam'; ( sleep 2.5 & echo \$! > \"\$d/.gc.\$\$\"; wait ) & c=\$!; "
script+="while [ ! -s \"\$d/.gc.\$\$\" ]; do sleep 0.01; done; "
script+="echo \"\$PPID \$\$ \$c \$(cat \"\$d/.gc.\$\$\")\" > \"\$d/.t.\$\$\"; "
script+="mv \"\$d/.t.\$\$\" \"\$d/\$ZTASK_TASK_ID.\$ZTASK_ATTEMPT\"; rm -f \"\$d/.gc.\$\$\"; wait"
out=$(zt submit --timeout 4 --array "0-$((N - 1))" -- sh -c "$script" 2>&1) ||
    chaos_fail "submit refused: $out"
job=$(sed -n 's/^job \([0-9]*\):.*/\1/p' <<<"$out" | head -n 1)

# The pids (one a line) of the tasks that worker $1 ran.
pids_of() { awk -v w="$1" '$1 == w { print $2; print $3; print $4 }' "$fam"/* 2>/dev/null; }
count_alive() {
    local n=0 p
    for p in $(pids_of "$1"); do alive "$p" && n=$((n + 1)); done
    echo "$n"
}
# running_on W: worker W has recorded at least one task that still runs.
running_on() { [ "$(count_alive "$1")" -gt 0 ]; }
# gone_within MS W: polls until no process of W's tasks is alive; prints
# how many still were at the deadline, and the ms it took.
gone_within() {
    local deadline=$(($(now_ms) + $1)) t0 left
    t0=$(now_ms)
    while :; do
        left=$(count_alive "$2")
        [ "$left" -eq 0 ] && break
        [ "$(now_ms)" -ge "$deadline" ] && break
        sleep 0.05
    done
    echo "$left $(($(now_ms) - t0))"
}

kills=0 with_reaper=0 procs=0 orphans_kill=0 orphans_start=0 worst_ms=0
while [ $kills -lt "$KILLS" ] && ! job_finished "$job"; do
    # Kill it while it runs tasks (not a synchronisation: a condition with
    # a deadline; a victim that never gets one ends the storm).
    wait_for 20 running_on "$victim" || break
    sleep 0.3 # let its other threads start theirs: the deliberate cadence
    alive "$MASTER_PID" || chaos_fail "the master died"
    n=$(count_alive "$victim")
    procs=$((procs + n))
    kills=$((kills + 1))
    if [ $((kills % 3)) -eq 0 ]; then
        reaper=$(grep -o 'event=reaper_started pid=[0-9]*' "$victim_log" | head -n 1 | cut -d= -f3)
        [ -n "$reaper" ] || chaos_fail "no event=reaper_started in $victim_log"
        kill -KILL "$reaper" 2>/dev/null
        wait_for 5 eval '! alive '"$reaper" || chaos_fail "the reaper $reaper did not die"
        kill -KILL "$victim" 2>/dev/null
        wait "$victim" 2>/dev/null
        with_reaper=$((with_reaper + 1))
        dead=$victim
        start_worker victim "$THREADS" --state-dir "$state"
        read -r left ms < <(gone_within "$OUTLIVE_MS" "$dead")
        orphans_start=$((orphans_start + left))
    else
        kill -KILL "$victim" 2>/dev/null
        wait "$victim" 2>/dev/null
        dead=$victim
        read -r left ms < <(gone_within "$OUTLIVE_MS" "$dead")
        orphans_kill=$((orphans_kill + left))
        start_worker victim "$THREADS" --state-dir "$state"
    fi
    [ "$ms" -gt "$worst_ms" ] && worst_ms=$ms
    victim=$WORKER_PID
    victim_log=$WORKER_LOG
done
wait_for $((120 * CHAOS_SCALE)) job_finished "$job" ||
    chaos_fail "job $job did not finish: $(zt status "$job" 2>&1)"
done_n=$(job_field "$job" done)

figure "tasks" "$N"
figure "kills (with the reaper)" "$kills ($with_reaper)"
figure "task processes running at the kills" "$procs"
figure "alive 1 s after the kill" "$orphans_kill"
figure "alive 1 s after the next start" "$orphans_start"
figure "slowest to be gone (ms)" "$worst_ms"
figure "done" "$done_n of $N"
[ $kills -ge 3 ] || chaos_fail "only $kills kills landed while the job ran"
[ "$procs" -gt 0 ] || chaos_fail "no killed worker had a task running"
[ "$orphans_kill" -eq 0 ] || chaos_fail "$orphans_kill processes outlived their worker by over 1 s"
[ "$orphans_start" -eq 0 ] ||
    chaos_fail "$orphans_start processes of a dead worker outlived the next worker's start by over 1 s"
[ "$done_n" = "$N" ] || chaos_fail "only $done_n of $N tasks done"
stop_master
chaos_pass
