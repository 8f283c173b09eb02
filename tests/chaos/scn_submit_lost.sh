#!/usr/bin/env bash
# Scenario: 20 clients submit at once and the master dies (SIGKILL) after
# committing one of their submits and before answering it (the test-only
# hook ZTASK_TEST_KILL_BEFORE_ACK, docs/protocol.md); it is restarted on the
# same database and port. Every `ztask submit` that reached the master must
# end acknowledged (one whose reply was lost sends it again, with its
# idempotency key; one that found nothing listening stops at once, having
# sent nothing) and the master must hold exactly the acknowledged jobs:
# none twice, none unacknowledged. The checker then finds every task run
# once, but for the few the worker held at the crash: none that had ended
# before it runs again (its result goes again to the restarted master).
. "$(dirname "$0")/lib.sh"
chaos_begin submit_lost

CLIENTS=20
N=$(size 100 500)
THREADS=4
MS=2
db=$CHAOS_DIR/m.db
records=$CHAOS_DIR/records
expect=$CHAOS_DIR/expect
args="{\"file\":\"$records\",\"ms\":$MS,\"ends\":true}"
port=$(free_port_pair) || chaos_fail "no free port pair"
MFLAGS=(--db "$db" --heartbeat-ms 200 --liveness 3 --recovery-grace 1)

# The 5th submit's answer is lost: several clients are in flight then.
ZTASK_TEST_KILL_BEFORE_ACK=5 start_master "$port" "${MFLAGS[@]}"
killed_log=$MASTER_LOG
start_worker wa "$THREADS"
echo "$WORKER_PID" >"$CHAOS_DIR/suspects"

for ((i = 0; i < CLIENTS; i++)); do
    ZTASK_REQUEST_TIMEOUT=2 "$BIN/ztask" --master "127.0.0.1:$port" submit --fn record \
        --args "$args" --array "0-$((N - 1))" >"$CHAOS_DIR/client.$i.out" \
        2>"$CHAOS_DIR/client.$i.err" &
    pids[i]=$!
done
wait_line "$killed_log" "event=test_kill_before_ack" 30 || chaos_fail "the master did not die at the ack"
# The master killed itself: the mark is on record up to a poll (50 ms)
# after the crash, so work that ended in that while counts as ended
# before it.
echo "kill 1" >>"$records"
wait "$MASTER_PID" 2>/dev/null
start_master "$port" "${MFLAGS[@]}"
failed=0
for ((i = 0; i < CLIENTS; i++)); do
    wait "${pids[i]}" || failed=$((failed + 1))
done
resent=$(cat "$CHAOS_DIR"/client.*.err | grep -c "sending it again" || true)
cat "$CHAOS_DIR"/client.*.out | sed -n 's/^job \([0-9]*\):.*/\1/p' | sort -n >"$CHAOS_DIR/acked"
sed "s/\$/ $N/" "$CHAOS_DIR/acked" >"$expect"
zt jobs --json | grep -o '"job":[0-9]*' | cut -d: -f2 | sort -n >"$CHAOS_DIR/all-jobs"
figure "clients" "$CLIENTS x $N tasks"
figure "submits failed" "$failed"
figure "submits sent again (stderr lines)" "$resent"
figure "copies the restarted master answered" "$(log_count "$MASTER_LOG" event=submit_repeated)"
figure "jobs acknowledged / in the master" "$(wc -l <"$CHAOS_DIR/acked") / $(wc -l <"$CHAOS_DIR/all-jobs")"
# A client that had not connected yet when the master died finds nothing
# listening and stops at once (exit 3): it sent nothing, so it must have
# made nothing (checked below). Any other failure is one.
other=$(cat "$CHAOS_DIR"/client.*.err | grep -v 'sending it again' | grep -v '^ztask: warning:' | grep -vc 'connection refused' || true)
[ "$other" -eq 0 ] || chaos_fail "submits failed otherwise than on a master that was down: $(cat "$CHAOS_DIR"/client.*.err | grep -v 'sending it again' | grep -v '^ztask: warning:' | head -n 2)"
[ "$resent" -ge 1 ] || chaos_fail "no client sent its submit again"
cmp -s "$CHAOS_DIR/acked" "$CHAOS_DIR/all-jobs" ||
    chaos_fail "acknowledged jobs and the master's differ: $(diff "$CHAOS_DIR/acked" "$CHAOS_DIR/all-jobs" | head -n 4)"
mapfile -t jobs < <(cut -d' ' -f1 "$expect")
wait_for 120 jobs_finished "$expect" || chaos_fail "a job did not finish"
results_of "$CHAOS_DIR/results.jsonl" "${jobs[@]}" || chaos_fail "results: no answer"
check --expect "$expect" --results "$CHAOS_DIR/results.jsonl" --records "$records" \
    --suspects "$CHAOS_DIR/suspects" --max-extra "$THREADS" --max-ended-before-kill 0 ||
    chaos_fail "the checker found lost, duplicated or unexplained work"
stop_master
chaos_pass
