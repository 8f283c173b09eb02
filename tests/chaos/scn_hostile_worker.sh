#!/usr/bin/env bash
# Scenario: hostile input against a worker. chaos-storm plays its master:
# it answers the worker's first three hellos with broken replies (not JSON,
# a refusal, fields out of range) and then a good one, pushes N frames
# (CI 100,000; full 1,000,000) of garbage down its task pipe with a legal
# "square" task after every 32 whose result must come back right and
# once, then frames over the 32 MiB limit (after which the worker must
# register again and run one more task), and finally SIGTERM, on which the
# worker must say bye and exit 0. Memory: VmRSS after the storm may exceed
# the one after the first 10% by at most RSS_SLACK_KB.
. "$(dirname "$0")/lib.sh"
chaos_begin hostile_worker

N=$(size 100000 1000000)
RSS_SLACK_KB=$((32 * 1024))
"$TOOLS/chaos-storm" worker --count "$N" -- "$BIN/ztask-worker" --master '{API}' --threads 2 \
    --no-exec --name storm 2>"$CHAOS_DIR/worker.log" | tee "$CHAOS_DIR/storm.out"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || chaos_fail "chaos-storm worker: exit $rc"
warm=$(grep -o 'rss_warm_kb=[0-9]*' "$CHAOS_DIR/storm.out" | cut -d= -f2)
end=$(grep -o 'rss_end_kb=[0-9]*' "$CHAOS_DIR/storm.out" | cut -d= -f2)
figure "worker VmRSS growth after warm-up" "$((end - warm)) kB (bound $RSS_SLACK_KB)"
if rss_judged; then
    [ $((end - warm)) -le $RSS_SLACK_KB ] || chaos_fail "VmRSS grew $((end - warm)) kB"
else
    echo "  (RSS not judged: sanitizer build)"
fi
figure "worker log lines" "$(wc -l <"$CHAOS_DIR/worker.log")"
chaos_pass
