#!/usr/bin/env bash
# Soak (`make soak`, not part of `make chaos`): a job of SOAK_TASKS fn noop
# tasks (default 1,000,000) on two workers completes with one result a
# task (the checker, reading `ztask results` from a pipe); the master's peak
# RSS (VmHWM) stays under 512 MiB; its RSS after `ztask forget JOB` is at
# most FORGET_SLACK_KB above its baseline; then ROUNDS jobs of ROUND_TASKS
# are run and forgotten one after another: the database (file + WAL) must
# not keep growing (the last round may end at most DB_SLACK_KB above the
# first) and neither may RSS (at most ROUNDS_SLACK_KB above the one after
# the first forget). RSS bounds are not judged on sanitizer builds.
. "$(dirname "$0")/lib.sh"
chaos_begin soak

SOAK_TASKS=${SOAK_TASKS:-$((1000000 * CHAOS_SCALE))}
ROUNDS=${SOAK_ROUNDS:-4}
ROUND_TASKS=${SOAK_ROUND_TASKS:-100000}
THREADS=4
PEAK_LIMIT_KB=$((512 * 1024))
DB_SLACK_KB=$((8 * 1024))
# After forget, what stays is the SQLite page cache (up to 32 MiB,
# STORE_CACHE_KIB in master/store.c, kept on purpose) and heap the
# allocator keeps: measured 48.8 MiB above the baseline on 2026-11-29 at
# 3c7884a (8,304 -> 58,236 kB; the peak was 62,168). 64 MiB = the cache +
# 32 MiB for the rest, about twice the 17 MiB measured. A forget that freed
# no task record would stay near the peak (61 MiB today, so the bound
# barely tells them apart now, but 504 MiB at 006a6a7): it matters once
# the per-task state grows again.
FORGET_SLACK_KB=$((64 * 1024))
# 4 rounds x 100,000 tasks: 16 MiB is a leak of ~40 bytes a task; measured
# +760 kB.
ROUNDS_SLACK_KB=$((16 * 1024))
db=$CHAOS_DIR/m.db

db_kb() { du -ck "$db" "$db-wal" 2>/dev/null | tail -n 1 | cut -f1; }

start_master 0 --db "$db"
start_worker sa $THREADS --no-exec
start_worker sb $THREADS --no-exec
base=$(rss_kb "$MASTER_PID")
figure "master VmRSS at start (kB)" "$base"

t0=$(now_ms)
out=$(zt submit --fn noop --array "0-$((SOAK_TASKS - 1))" --name soak 2>&1) ||
    chaos_fail "submit: $out"
job=$(sed -n 's/^job \([0-9]*\):.*/\1/p' <<<"$out")
figure "submit of $SOAK_TASKS tasks (s)" "$(( ($(now_ms) - t0) / 1000 ))"
figure "master VmRSS after the submit (kB)" "$(rss_kb "$MASTER_PID")"
wait_for $((1800 * CHAOS_SCALE)) job_finished "$job" ||
    chaos_fail "job $job did not finish: $(zt status "$job" 2>&1)"
secs=$(( ($(now_ms) - t0) / 1000 ))
figure "job time (s)" "$secs ($((SOAK_TASKS / (secs > 0 ? secs : 1))) tasks/s)"
figure "master VmRSS when done (kB)" "$(rss_kb "$MASTER_PID")"
peak=$(rss_kb "$MASTER_PID" VmHWM)
figure "master VmHWM, the peak (kB)" "$peak (limit $PEAK_LIMIT_KB)"
figure "database after the job (kB)" "$(db_kb)"

echo "$job $SOAK_TASKS" >"$CHAOS_DIR/expect"
zt results "$job" --json | check --expect "$CHAOS_DIR/expect" --results /dev/stdin
rc=${PIPESTATUS[1]}
[ "$rc" -eq 0 ] || chaos_fail "the checker found lost or duplicated results"
[ "$peak" -lt $PEAK_LIMIT_KB ] || ! rss_judged || chaos_fail "peak RSS $peak kB, limit $PEAK_LIMIT_KB"

zt forget "$job" >/dev/null || chaos_fail "forget $job refused"
after=$(rss_kb "$MASTER_PID")
figure "master VmRSS after forget (kB)" "$after (start $base, peak $peak, bound +$FORGET_SLACK_KB)"
if rss_judged; then
    [ $((after - base)) -le $FORGET_SLACK_KB ] ||
        chaos_fail "VmRSS after forget $after kB, $((after - base)) kB above the start (bound $FORGET_SLACK_KB)"
fi
jobs_left=$(zt jobs --json | grep -c '"job":')
[ "$jobs_left" -eq 0 ] || chaos_fail "$jobs_left jobs left after forget"

sizes=()
for ((r = 1; r <= ROUNDS; r++)); do
    out=$(zt submit --fn noop --array "0-$((ROUND_TASKS - 1))" 2>&1) || chaos_fail "round $r: $out"
    j=$(sed -n 's/^job \([0-9]*\):.*/\1/p' <<<"$out")
    wait_for 600 job_finished "$j" || chaos_fail "round $r: job $j did not finish"
    zt forget "$j" >/dev/null || chaos_fail "round $r: forget $j refused"
    sizes+=("$(db_kb)")
done
figure "database after each round + forget (kB)" "${sizes[*]} ($ROUNDS x $ROUND_TASKS tasks)"
rounds_rss=$(rss_kb "$MASTER_PID")
figure "master VmRSS after the rounds (kB)" "$rounds_rss (bound +$ROUNDS_SLACK_KB)"
if rss_judged; then
    [ $((rounds_rss - after)) -le $ROUNDS_SLACK_KB ] ||
        chaos_fail "VmRSS grew $((rounds_rss - after)) kB over $ROUNDS rounds (bound $ROUNDS_SLACK_KB)"
fi
grow=$((sizes[ROUNDS - 1] - sizes[0]))
[ "$grow" -le $DB_SLACK_KB ] || chaos_fail "the database grew $grow kB over $ROUNDS rounds"
stop_master
chaos_pass
