#!/usr/bin/env bash
# Scenario: the master's database on a small tmpfs that something else
# fills up while a job runs. Submits are refused with a clear error (exit 4, the message
# says the disk is full), the master stays up and keeps what it was told,
# and when space returns it recovers: the journal is committed, new submits
# work, every acknowledged job completes with one result a task, and a
# kill -9 and restart after that shows the same results.
# Needs root (mount); prints SKIP otherwise.
#
# The tmpfs is 16 MiB; CHAOS_DISK_MB=2 gives the tiny disk of finding 3
# (docs/chaos.md), where the WAL itself takes nearly every block: it passes
# since the master keeps a ballast file for the checkpoint that truncates
# the WAL, and keeps the WAL short after a failed commit.
. "$(dirname "$0")/lib.sh"
chaos_begin disk_full

[ "$(id -u)" -eq 0 ] || chaos_skip "not root: cannot mount a tmpfs"
mnt=$CHAOS_DIR/mnt
mkdir -p "$mnt"
mount -t tmpfs -o size="${CHAOS_DISK_MB:-16}m" tmpfs "$mnt" 2>"$CHAOS_DIR/mount.err" ||
    chaos_skip "cannot mount a tmpfs: $(cat "$CHAOS_DIR/mount.err")"
# Lazy: the processes are gone by then, but be sure the mount never stays.
CHAOS_CLEANUPS+=("umount -l '$mnt'")

N=$(size 1000 5000)
THREADS=2
MS=10
db=$mnt/m.db
records=$CHAOS_DIR/records
expect=$CHAOS_DIR/expect
args="{\"file\":\"$records\",\"ms\":$MS}"
port=$(free_port_pair) || chaos_fail "no free port pair"
MFLAGS=(--db "$db" --heartbeat-ms 200 --liveness 3 --recovery-grace 1)

start_master "$port" "${MFLAGS[@]}"
start_worker da "$THREADS"
start_worker db "$THREADS"
submit_record job1 "$N" "$args" || chaos_fail "submit refused: $(cat "$CHAOS_DIR/submit.out")"
echo "$job1 $N" >"$expect"
done_at_least() { local d; d=$(job_field "$job1" done); [ "${d:-0}" -ge "$1" ]; }
wait_for 30 done_at_least $((N / 10)) || chaos_fail "job $job1 did not start"

# Fill the disk to the last block.
dd if=/dev/zero of="$mnt/fill" bs=4k 2>/dev/null
figure "tmpfs" "$(df -k "$mnt" | awk 'NR == 2 { print $3 " kB used, " $4 " kB free" }')"

# Submits until one is refused; one that still fits (SQLite may reuse free
# pages) is acknowledged and must then survive like any other.
refused=0 acked_full=0 msg=
for ((i = 0; i < 20 && refused == 0; i++)); do
    submit_record j "$N" "$args"
    rc=$?
    if [ $rc -eq 0 ]; then
        echo "$j $N" >>"$expect"
        acked_full=$((acked_full + 1))
    elif [ $rc -eq 4 ]; then
        refused=1
        msg=$(cat "$CHAOS_DIR/submit.out")
    else
        chaos_fail "submit on a full disk: exit $rc, want 4 or 0: $(cat "$CHAOS_DIR/submit.out")"
    fi
done
figure "submits acknowledged while full" "$acked_full"
figure "refusal" "$msg"
[ $refused -eq 1 ] || chaos_fail "20 submits on a full disk and none refused"
grep -qiE 'disk|space|full' <<<"$msg" || chaos_fail "the refusal does not say the disk is full"
alive "$MASTER_PID" || chaos_fail "the master died on a full disk"

# Results keep arriving while the disk is full: the master holds them.
# Watched through the tasks' own records: while the memory is ahead of
# the database the master answers no status (docs/protocol.md, "A full
# disk"); whenever it does answer, results agrees with it.
records_at_least() { [ "$(wc -l <"$records")" -ge "$1" ]; }
d0=$(wc -l <"$records")
wait_for 20 records_at_least $((d0 + N / 4)) || chaos_fail "no progress while the disk was full"
figure "job 1 tasks run while full (records)" "$d0 -> $(wc -l <"$records") of $N"
if st=$(zt status "$job1" --json 2>"$CHAOS_DIR/status.err"); then
    figure "status while full" "answered"
else
    grep -q "cannot write its database" "$CHAOS_DIR/status.err" ||
        chaos_fail "status on a full disk: $(cat "$CHAOS_DIR/status.err")"
    figure "status while full" "refused: $(cut -c1-100 "$CHAOS_DIR/status.err")"
fi
figure "commit failures logged" "$(log_count "$MASTER_LOG" event=commit_failed)"
alive "$MASTER_PID" || chaos_fail "the master died on a full disk"

# Recovered: the last of its failed commits is followed by a recovery
# (which may come before the disk is freed: a failed commit gives the
# ballast's and the WAL's blocks back).
recovered_now() {
    grep -E 'event=(commit_failed|storage_recovered)' "$MASTER_LOG" | tail -n 1 |
        grep -q storage_recovered
}
rm -f "$mnt/fill"
wait_for 20 recovered_now || chaos_fail "the master did not recover within 20 s of freeing the disk"
submit_record j "$((N / 5))" "$args" ||
    chaos_fail "submit after recovery refused: $(cat "$CHAOS_DIR/submit.out")"
echo "$j $((N / 5))" >>"$expect"

mapfile -t jobs < <(cut -d' ' -f1 "$expect")
wait_for 120 jobs_finished "$expect" || chaos_fail "an acknowledged job did not finish"
results_of "$CHAOS_DIR/results.jsonl" "${jobs[@]}" || chaos_fail "results: no answer"
# Every worker is a suspect: a failed commit can put a result back.
grep -ho 'ztask-worker\[[0-9]*\]' "$CHAOS_DIR"/d[ab].*.log | tr -dc '0-9\n' | sort -u \
    >"$CHAOS_DIR/suspects"
check --expect "$expect" --results "$CHAOS_DIR/results.jsonl" --records "$records" \
    --suspects "$CHAOS_DIR/suspects" --max-extra $((2 * THREADS)) ||
    chaos_fail "the checker found lost, duplicated or unexplained work"

# What was committed after the recovery survives a crash.
kill -KILL "$MASTER_PID"
wait "$MASTER_PID" 2>/dev/null
ic=$(integrity "$db")
figure "integrity_check" "$ic"
[ "$ic" = ok ] || chaos_fail "integrity_check: $ic"
start_master "$port" "${MFLAGS[@]}"
results_of "$CHAOS_DIR/results2.jsonl" "${jobs[@]}" || chaos_fail "results: no answer"
cmp -s "$CHAOS_DIR/results.jsonl" "$CHAOS_DIR/results2.jsonl" ||
    chaos_fail "the results changed across a restart: $(diff "$CHAOS_DIR/results.jsonl" \
        "$CHAOS_DIR/results2.jsonl" | head -n 4)"
figure "database size (kB)" "$(du -k "$db" | cut -f1)"
stop_master
chaos_pass
