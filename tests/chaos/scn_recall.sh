#!/usr/bin/env bash
# Scenario (issue 14, item 6; the recall protocol, docs/protocol.md section
# 8): a recalled task never runs twice and none is lost, under faults.
#
# Four jobs, one after another, of S short tasks then L long ones (record's
# long_from: 60-112 ms each, unevenly), on workers of 2 threads with the
# default --prefetch auto: during the short phase every worker is sent
# about 32 ms of tasks per thread beyond its threads, which are long ones
# by the time the short ones run out, so workers fall idle while others
# hold long tasks unstarted, and the master recalls them. Each round adds
# a fault at a recall:
#   1 join    a newcomer (free threads) joins once the job's tasks are
#             all out (nothing queued at the master: recalls alone feed it);
#   2 kill    the holder a recall was just sent to is kill -9'd (the wait
#             is for the master's recall_sent line, not a sleep), and a
#             newcomer replaces it;
#   3 stop    the holder a recall was just sent to is SIGSTOPped until the
#             master declares it lost, then continued;
#   4 master  a newcomer joins, and the master is kill -9'd right after
#             it sends a recall, and restarted on the same database and
#             port.
# Then: the checker (lost, duplicated, unexpected, phantom 0; extra
# executions only on killed or stopped workers, within a bound), a minimum
# of recalls and of tasks given back, and the recall's own promise, from
# the master's debug log (event=requeued ... why=recalled, one per task
# given back, then event=tasks_recalled worker=W for the report): no
# attempt a worker gave back has a start on record on that worker (the
# record plugin writes "TASK ATTEMPT PID" before anything else), nor
# anywhere (a resend is the next attempt).
. "$(dirname "$0")/lib.sh"
chaos_begin recall

S=$(size 400 4000)
L=$(size 64 640)
SHORT_MS=1
LONG_MS=60
THREADS=2
N=$((S + L))
db=$CHAOS_DIR/m.db
records=$CHAOS_DIR/records
expect=$CHAOS_DIR/expect
suspects=$CHAOS_DIR/suspects
names=$CHAOS_DIR/names # "NAME PID" for every worker started
port=$(free_port_pair) || chaos_fail "no free port pair"
# Debug: the per-task requeue lines (why=recalled) and recall_sent.
MFLAGS=(--db "$db" --heartbeat-ms 200 --liveness 3 --recovery-grace 1 --log-level debug)
: >"$expect"
: >"$suspects"
: >"$names"
: >"$CHAOS_DIR/marks"

# worker NAME: a worker of THREADS threads, named once (the check below
# maps the master's worker=NAME to a PID).
declare -A PID_OF=()
worker() {
    start_worker "$1" "$THREADS"
    PID_OF[$1]=$WORKER_PID
    echo "$1 $WORKER_PID" >>"$names"
}

start_master "$port" "${MFLAGS[@]}"
worker wa
worker wb
args="{\"file\":\"$records\",\"ms\":$SHORT_MS,\"long_from\":$S,\"long_ms\":$LONG_MS}"

# round: submits the next job and waits for its first long task to start
# (by then the workers hold long tasks queued). Sets job.
round() {
    submit_record job "$N" "$args" || chaos_fail "submit refused: $(cat "$CHAOS_DIR/submit.out")"
    echo "$job $N" >>"$expect"
    wait_for 30 long_started "$job" || chaos_fail "job $job: no long task started"
}
long_started() { awk -v j="$1" -v s="$S" '$4 == j && $5 >= s { f = 1; exit } END { exit !f }' \
    "$records" 2>/dev/null; }
# all_sent JOB: none of its tasks waits in the master's queue: what is not
# done is on the workers, so a newcomer can only get work by a recall.
all_sent() { local q; q=$(job_field "$1" queued); [ "${q:-1}" -eq 0 ]; }
finish() {
    wait_for $((60 * CHAOS_SCALE)) job_finished "$1" ||
        chaos_fail "job $1 did not finish: $(zt status "$1" 2>&1)"
}
# next_recall: prints the holder of the master's next recall (past $sent
# recall_sent lines in this run's log) as soon as the line is written:
# tail -F follows the log (inotify), so the fault that follows lands within
# milliseconds of the recall, often before its answer.
sent=0
next_recall() {
    local fd tailpid line seen=0
    exec {fd}< <(exec timeout 20 tail -n +1 -F "$MASTER_LOG" 2>/dev/null)
    tailpid=$!
    while IFS= read -r -u "$fd" line; do
        case $line in
        *"event=recall_sent "*)
            seen=$((seen + 1))
            [ $seen -gt "$sent" ] && break
            ;;
        esac
        line=
    done
    kill "$tailpid" 2>/dev/null
    exec {fd}<&-
    [ -n "$line" ] || return 1
    sent=$seen
    sed 's/.*event=recall_sent worker=\([^ ]*\) .*/\1/' <<<"$line"
}
recalls_sent() { log_count "$MASTER_LOG" "event=recall_sent "; }

# 1. join: a newcomer once the job's queue is empty.
round
wait_for 30 all_sent "$job" || chaos_fail "round 1: tasks still queued"
worker wc
finish "$job"

# 2. kill: the holder of a recall, right after the master sent it.
round
sent=$(recalls_sent)
holder=$(next_recall) || chaos_fail "round 2: no recall sent"
victim=${PID_OF[$holder]:-}
[ -n "$victim" ] || chaos_fail "round 2: recall sent to an unknown worker '$holder'"
kill -KILL "$victim"
wait "$victim" 2>/dev/null
echo "$victim" >>"$suspects"
killed=$holder
worker wd
finish "$job"

# 3. stop: the holder of a recall, until the master declares it lost.
round
sent=$(recalls_sent)
holder=$(next_recall) || chaos_fail "round 3: no recall sent"
sleeper=${PID_OF[$holder]:-}
[ -n "$sleeper" ] || chaos_fail "round 3: recall sent to an unknown worker '$holder'"
kill -STOP "$sleeper"
echo "$sleeper" >>"$suspects"
wait_line "$MASTER_LOG" "event=worker_lost worker=$holder " 10 ||
    { kill -CONT "$sleeper"; chaos_fail "round 3: the stopped $holder was not declared lost"; }
stopped=$holder
held=$(grep -o "event=worker_lost worker=$holder .*requeued=[0-9]*" "$MASTER_LOG" |
    tail -n 1 | sed 's/.*requeued=//')
kill -CONT "$sleeper"
finish "$job"

# 4. master: a newcomer once the queue is empty (recalls for it), and the
# master kill -9'd right after one goes out, then restarted.
round
wait_for 30 all_sent "$job" || chaos_fail "round 4: tasks still queued"
worker we
sent=$(recalls_sent)
next_recall >/dev/null || chaos_fail "round 4: no recall sent"
kill -KILL "$MASTER_PID"
wait "$MASTER_PID" 2>/dev/null
# The record file's length when master run K died (line K of marks): what
# the next run sends starts after it (see the check below).
wc -l <"$records" >>"$CHAOS_DIR/marks"
# Every worker alive may have had work cut short by the crash (results
# taken but not committed: master_kill).
for name in "${!PID_OF[@]}"; do
    [ "$name" = "$killed" ] || echo "${PID_OF[$name]}" >>"$suspects"
done
start_master "$port" "${MFLAGS[@]}"
finish "$job"
mapfile -t jobs < <(cut -d' ' -f1 "$expect")
results_of "$CHAOS_DIR/results.jsonl" "${jobs[@]}" || chaos_fail "results: no answer"

# The recalls, from every run of the master: each tasks_recalled (info,
# something came back) closes the requeued why=recalled lines before it.
# "RUN TIME TASK ATTEMPT NAME" per task given back.
for ((r = 1; r <= MASTER_RUNS; r++)); do
    awk -v run="$r" '
        /event=requeued / && / why=recalled/ {
            match($0, /task=[0-9]+/); t = substr($0, RSTART + 5, RLENGTH - 5)
            match($0, /attempt=[0-9]+/); a = substr($0, RSTART + 8, RLENGTH - 8)
            q[n++] = $1 " " t " " a
        }
        /event=tasks_recalled / {
            match($0, /worker=[^ ]+/); w = substr($0, RSTART + 7, RLENGTH - 7)
            match($0, /returned=[0-9]+/); b = substr($0, RSTART + 9, RLENGTH - 9)
            if (b != n) { print "MISMATCH " run " " $1 " returned=" b " lines=" n; }
            for (i = 0; i < n; i++) print run " " q[i] " " w
            n = 0
        }' "$CHAOS_DIR/master.$r.log"
done >"$CHAOS_DIR/recalled"
grep -q '^MISMATCH' "$CHAOS_DIR/recalled" &&
    chaos_fail "a tasks_recalled line does not match its requeue lines: $(grep -m1 MISMATCH "$CHAOS_DIR/recalled")"
# Answers that gave something back (info; an empty one is at debug).
reports=$(cat "$CHAOS_DIR"/master.*.log | grep -c 'INFO .*event=tasks_recalled ')
returned=$(wc -l <"$CHAOS_DIR/recalled")
sent_all=$(cat "$CHAOS_DIR"/master.*.log | grep -cF 'event=recall_sent ')
# A given-back attempt must never start: not on the worker that gave it
# back (it promised not to), and not elsewhere (a resend is attempt + 1).
# One exception, by design: the store learns a task's attempt only when
# the task has been out ASSIGN_WRITE_MS (master/journal.h) or ends, so
# after a master crash a task given back (or sent again since) can be
# found at its old attempt and sent as the same number again. So a recall
# logged by master run K is judged against the executions that run could
# have sent: the record lines between the kills that ended runs K-1 and K
# (marks); a start of that attempt in another run's lines is counted as
# "the number reused after a crash", not judged. (A run's sends that
# start after its kill fall in the next run's lines: a holder that started
# a given-back attempt only then would be counted there, not judged; the
# broken worker of docs/chaos.md starts them at once.)
awk 'FILENAME == ARGV[1] { mark[++nm] = $1; next }
     FILENAME == ARGV[2] { pid[$1] = $2; next }
     FILENAME == ARGV[3] { run[$3 " " $4] = $1; holder[$3 " " $4] = pid[$5]; next }
     { while (w < nm && FNR > mark[w + 1]) w++
       k = $1 " " $2
       if (!(k in run)) next
       if (run[k] == w + 1) print $0, (holder[k] == $3 ? "ON-HOLDER" : "ELSEWHERE")
       else print $0, "REUSED" }' \
    "$CHAOS_DIR/marks" "$names" "$CHAOS_DIR/recalled" "$records" >"$CHAOS_DIR/ran-after-recall"
on_holder=$(grep -c 'ON-HOLDER$' "$CHAOS_DIR/ran-after-recall")
elsewhere=$(grep -c 'ELSEWHERE$' "$CHAOS_DIR/ran-after-recall")
reused=$(grep -c 'REUSED$' "$CHAOS_DIR/ran-after-recall")
executions=$(wc -l <"$records")

figure "jobs" "4 x ($S x ${SHORT_MS} ms + $L x ${LONG_MS}-$((LONG_MS * 15 / 8)) ms), $THREADS threads a worker, prefetch auto"
figure "faults" "newcomer wc; kill -9 $killed; SIGSTOP $stopped (requeued $held); master kill -9"
figure "recalls sent / answered with tasks" "$sent_all / $reports"
figure "tasks given back" "$returned"
figure "given back, then started as that attempt" "on the holder $on_holder, elsewhere $elsewhere (the number reused after a crash: $reused)"
figure "executions / tasks" "$executions / $((4 * N))"
MIN_RECALLS=15
MIN_RETURNED=20
[ "$reports" -ge "$MIN_RECALLS" ] ||
    chaos_fail "only $reports recalls gave tasks back (want >= $MIN_RECALLS): the scenario no longer exercises the recall"
[ "$returned" -ge "$MIN_RETURNED" ] ||
    chaos_fail "only $returned tasks given back (want >= $MIN_RETURNED)"
[ "$on_holder" -eq 0 ] ||
    chaos_fail "$on_holder attempts given back by a recall started on the worker that gave them back: $(grep -m1 'ON-HOLDER$' "$CHAOS_DIR/ran-after-recall")"
[ "$elsewhere" -eq 0 ] ||
    chaos_fail "$elsewhere attempts given back by a recall started again under the same attempt number: $(grep -m1 'ELSEWHERE$' "$CHAOS_DIR/ran-after-recall")"
# Extra executions: a kill -9 cuts short what the victim was running (its
# threads); the stopped worker runs on what it held when continued (the
# master requeued those: held); the master's crash, what every worker ran
# (threads) and the results it had taken but not committed (master_kill's
# 50 a commit).
nworkers=${#PID_OF[@]}
max_extra=$((THREADS + held + THREADS + nworkers * THREADS + 50))
check --expect "$expect" --results "$CHAOS_DIR/results.jsonl" --records "$records" \
    --suspects "$suspects" --max-extra "$max_extra" ||
    chaos_fail "the checker found lost, duplicated or unexplained work"
stop_master
chaos_pass
