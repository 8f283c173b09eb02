#!/usr/bin/env bash
# Scenario: hostile input against the master. chaos-storm sends N frames
# (CI 100,000; full 1,000,000) of random, truncated, mutated, tricky and
# large messages to the API ROUTER and the REPORT PULL, with a legal
# request after every 32 that must get the right answer (a held job of 100
# tasks stays exactly as it is; one-task submits get new jobs), then a
# registration flood of 1,500 hellos and frames over the 32 MiB limit.
# Afterwards a real worker runs the held job and every job the storm
# submitted, once each (the checker), and the master stops with exit 0.
# Memory: VmRSS after the storm may exceed the one after the first 10% by
# at most RSS_SLACK_KB.
. "$(dirname "$0")/lib.sh"
chaos_begin hostile_master

N=$(size 100000 1000000)
K=100
HELLOS=1500
RSS_SLACK_KB=$((32 * 1024))
records=$CHAOS_DIR/records

start_master 0 --db "$CHAOS_DIR/m.db"
report=$(grep -m1 -o 'reports=tcp://[^ ]*' "$MASTER_LOG" | sed 's|.*:||')
submit_record job "$K" "{\"file\":\"$records\"}" || chaos_fail "submit refused"
"$TOOLS/chaos-storm" master --api "$API" --report "$report" --pid "$MASTER_PID" --job "$job" \
    --job-tasks "$K" --record "$records" --jobs-out "$CHAOS_DIR/storm-jobs" --count "$N" \
    --hellos "$HELLOS" | tee "$CHAOS_DIR/storm.out"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || chaos_fail "chaos-storm master: exit $rc"
alive "$MASTER_PID" || chaos_fail "the master died"

warm=$(grep -o 'rss_warm_kb=[0-9]*' "$CHAOS_DIR/storm.out" | cut -d= -f2)
end=$(grep -o 'rss_end_kb=[0-9]*' "$CHAOS_DIR/storm.out" | cut -d= -f2)
figure "master VmRSS growth after warm-up" "$((end - warm)) kB (bound $RSS_SLACK_KB)"
if rss_judged; then
    [ $((end - warm)) -le $RSS_SLACK_KB ] || chaos_fail "VmRSS grew $((end - warm)) kB"
else
    echo "  (RSS not judged: sanitizer build)"
fi

# The fake workers of the flood time out (liveness); a real one then
# registers and runs everything.
start_worker real 4
{ echo "$job $K"; cat "$CHAOS_DIR/storm-jobs"; } >"$CHAOS_DIR/expect"
mapfile -t jobs < <(cut -d' ' -f1 "$CHAOS_DIR/expect")
wait_for 120 jobs_finished "$CHAOS_DIR/expect" || chaos_fail "a job did not finish after the storm"
results_of "$CHAOS_DIR/results.jsonl" "${jobs[@]}" || chaos_fail "results: no answer"
check --expect "$CHAOS_DIR/expect" --results "$CHAOS_DIR/results.jsonl" --records "$records" ||
    chaos_fail "the checker found lost, duplicated or unexpected work"
figure "master VmRSS at the end (kB)" "$(rss_kb "$MASTER_PID")"
figure "master log lines" "$(wc -l <"$MASTER_LOG")"
stop_master
chaos_pass
