#!/usr/bin/env bash
# ztask's worker allocation on a real Slurm (`make test-slurm`).
#
# Starts a single-node Slurm from Debian's packages for this one host
# (munged, slurmctld, slurmd; a slurm.conf generated in a temp directory,
# every daemon on 127.0.0.1 ports picked free; proctrack/linuxproc, no
# cgroups or accounting needed), a ztask master without any worker, and
# checks:
#   1. `ztask alloc add slurm` (JSON) and a job of 300 tasks: the master
#      submits allocations (sbatch), squeue shows them running, the tasks
#      run on workers inside Slurm jobs (each task prints SLURM_JOB_ID), no
#      more than --max-workers allocations at once;
#   2. the workers leave once idle and their allocations end (alloc list:
#      ended, each with a worker seen; squeue empty);
#   3. a master kill -9 while an allocation runs: the restarted master finds
#      it again (same Slurm job id, none submitted twice), the job finishes;
#   4. --time-request: a task longer than what is left of an allocation
#      does not go to its worker (unrunnable), a shorter one does;
#   5. an sbatch failure (a partition that does not exist) is reported in
#      alloc list and the log, and backed off (no tight loop);
#   6. alloc remove of a queue whose allocation runs, then of one whose
#      allocation is pending: refused with one line naming it and --force;
#      with --force (JSON) the allocation is cancelled (scancel: squeue no
#      longer lists it, its worker is gone) and the queue forgotten.
# Everything is stopped at the end (also on failure or interrupt); the
# directory is removed when all passed (KEEP_LOGS=1 keeps it).
#
# SKIP (exit 0) only where it cannot run: not root (slurmd runs jobs as
# their user and needs root here), or the packages missing. Ends with
# "N passed, N failed".
set -u -o pipefail
cd "$(dirname "$0")/../.." || exit 2

bin=${1:-build/release/bin}
bin=$(cd "$bin" && pwd) || { echo "FAIL  no $1 (make all first)"; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: tests/slurm needs root (it starts slurmctld, slurmd and munged)"
    exit 0
fi
for cmd in slurmctld slurmd munged sbatch squeue scancel sinfo python3; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
        echo "SKIP: tests/slurm needs $cmd (Debian: slurmctld slurmd slurm-client munge)"
        exit 0
    fi
done

dir=$(mktemp -d /tmp/ztask-slurm-XXXXXX)
chmod 755 "$dir"
passed=0 failed=0
pids=()

ok() { echo "ok    $*"; passed=$((passed + 1)); }
bad() { echo "FAIL  $*"; failed=$((failed + 1)); }
check() {   # check "what" COMMAND...
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}
# Polls a command until it succeeds or the seconds pass.
until_ok() {   # until_ok SECONDS COMMAND...
    local deadline=$(($(date +%s) + $1))
    shift
    while ! "$@" 2>/dev/null; do
        [ "$(date +%s)" -ge "$deadline" ] && return 1
        sleep 0.3
    done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

teardown() {
    set +e
    if [ -n "${SLURM_CONF:-}" ]; then
        scancel --name "$(seq -s, -f 'ztask-alloc-%g' 1 9)" >/dev/null 2>&1
    fi
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    [ -f "$dir/slurmd.pid" ] && kill "$(cat "$dir/slurmd.pid")" 2>/dev/null
    [ -f "$dir/slurmctld.pid" ] && kill "$(cat "$dir/slurmctld.pid")" 2>/dev/null
    [ -f "$dir/munged.pid" ] && kill "$(cat "$dir/munged.pid")" 2>/dev/null
    # Whatever the allocations started (their workers) goes too.
    pkill -f "ztask-worker --master 127.0.0.1:$api" 2>/dev/null
    sleep 0.5
    for f in slurmd slurmctld munged; do
        [ -f "$dir/$f.pid" ] && kill -9 "$(cat "$dir/$f.pid")" 2>/dev/null
    done
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    if [ "$failed" -eq 0 ] && [ "${KEEP_LOGS:-0}" != 1 ]; then
        rm -rf "$dir"
    else
        echo "logs in $dir"
    fi
}
trap teardown EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------- Slurm

host=$(hostname -s)
api=$(free_port)
ctl_port=$(free_port)
d_port=$(free_port)
mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/work"
head -c 1024 /dev/urandom >"$dir/munge.key"
chmod 0400 "$dir/munge.key"
munged --socket="$dir/munge.sock" --key-file="$dir/munge.key" --pid-file="$dir/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/munge.seed" -f \
    || { bad "munged started"; exit 1; }
plugin_dir=$(dirname "$(find /usr/lib -name 'select_cons_tres.so' 2>/dev/null | head -1)")
cat >"$dir/slurm.conf" <<EOF
# A single-node Slurm for ztask's tests (tests/slurm/run.sh), on loopback.
ClusterName=ztasktest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctl_port
SlurmdPort=$d_port
AuthType=auth/munge
AuthInfo=socket=$dir/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
PluginDir=$plugin_dir
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=ztask Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$SLURM_CONF" || { bad "slurmctld started"; exit 1; }
slurmd -f "$SLURM_CONF" -N "$host" || { bad "slurmd started"; exit 1; }
node_idle() { sinfo -h -o %T 2>/dev/null | grep idle >/dev/null; }
if until_ok 30 node_idle; then
    ok "a single-node Slurm is up ($(sinfo -V), node $host idle)"
else
    bad "the Slurm node never became idle: $(sinfo 2>&1 | tail -2)"
    exit 1
fi

# ------------------------------------------------------------- ztask
# The workers run as root (slurmd runs jobs as their submitter) for a
# master without keys: each queue says --allow-root (ztask-worker --help).

Z() { timeout 30 "$bin/ztask" --master "127.0.0.1:$api" "$@"; }
start_master() {
    (cd "$dir/work" && exec "$bin/ztask-master" --port "$api" --db "$dir/ztask.db" \
        >>"$dir/log/master.log" 2>&1) &
    master_pid=$!
    pids+=("$master_pid")
    until_ok 15 grep -q "event=listening" "$dir/log/master.log"
}
start_master || { bad "the master started"; exit 1; }
json() {   # json PYTHON [ARGS...]: sys.argv[1:] are ARGS
    local code=$1
    shift
    python3 -c "import json,sys; $code" "$@"
}

# 1. Allocations for a job with no worker.
out=$(Z alloc add slurm --worker-arg=--allow-root --time-limit 10m --idle-timeout 3s --max-workers 2 --name cpu \
      --worker-arg=--threads=2 --json -- --partition=ztask)
check "alloc add slurm answers the new queue (id 1) in JSON" \
    json 'q=json.loads(sys.argv[1]); assert q["id"]==1 and q["max_workers"]==2, q' "$out"
# Each task also asks squeue about its own Slurm job (what the sampling
# below can miss when the workers finish the job within a second).
job=$(Z submit --json --array 1-300 -- sh -c "echo \"\$SLURM_JOB_ID\"; squeue -h -j \"\$SLURM_JOB_ID\" -o '%j %T' >>'$dir/seen' 2>&1" \
      | json 'print(json.loads(sys.stdin.read())["job"])')
saw_running=0 max_unended=0
deadline=$(($(date +%s) + 180))
while [ "$(date +%s)" -lt "$deadline" ]; do
    if squeue -h -t running -o '%j' | grep '^ztask-alloc-1$' >/dev/null; then saw_running=1; fi
    n=$(Z alloc list --json | json 'q=json.loads(sys.stdin.readline()); print(sum(a["state"]!="ended" for a in q["allocations"]))')
    [ "${n:-0}" -gt "$max_unended" ] && max_unended=$n
    st=$(Z status "$job" --json | json 'print(json.loads(sys.stdin.read())["state"])')
    [ "$st" = done ] && break
    sleep 0.5
done
check "the 300-task job finished (state $st)" [ "$st" = done ]
grep -q '^ztask-alloc-1 RUNNING$' "$dir/seen" 2>/dev/null && saw_running=1
check "squeue showed the allocation running" [ "$saw_running" = 1 ]
# Sampling may miss an allocation whose workers finish the job within a
# second of its sbatch answer: the most that overlapped is computed from
# the allocations' own submitted..ended times (unended: still open).
overlap=$(Z alloc list --json | json '
q=json.loads(sys.stdin.readline()); ev=[]
for a in q["allocations"]:
    ev.append((a["submitted"], 1))
    if a["state"]=="ended": ev.append((a["ended"], -1))
n=m=0
for _, d in sorted(ev, key=lambda e: (e[0], e[1])):
    n+=d; m=max(m, n)
print(m)')
check "never more than --max-workers 2 allocations at once (sampled $max_unended, overlapped ${overlap:-?})" \
    [ "$max_unended" -le 2 -a "${overlap:-0}" -ge 1 -a "${overlap:-0}" -le 2 ]
Z results "$job" --json >"$dir/results.jsonl"
alloc_ids=$(Z alloc list --json | json 'q=json.loads(sys.stdin.readline()); print(" ".join(a["id"] for a in q["allocations"]))')
check "every task ran inside one of the queue's Slurm jobs ($alloc_ids)" \
    json '
ids=set(sys.argv[1].split()); n=0
for line in open(sys.argv[2]):
    r=json.loads(line); n+=1
    assert r["status"]=="done", r
    assert r["stdout"].strip() in ids, (r["stdout"], ids)
assert n==300, n' "$alloc_ids" "$dir/results.jsonl"
check "the workers showed their Slurm job (ztask workers)" \
    json 'ws=[json.loads(l) for l in sys.stdin if l.strip()]; assert ws and all(w.get("slurm_job") for w in ws), ws' \
    < <(Z workers --json)

# 2. Idle workers leave; the allocations end.
all_ended() {
    Z alloc list --json | json 'q=json.loads(sys.stdin.readline()); assert q["allocations"] and all(a["state"]=="ended" and a["had_worker"] for a in q["allocations"]), q'
}
check "idle workers left and every allocation ended (alloc list)" until_ok 60 all_ended
check "squeue lists none of the queue's jobs any more" \
    [ -z "$(squeue -h -o '%j' --name=ztask-alloc-1)" ]
check "no alive worker is left" \
    json 'ws=[json.loads(l) for l in sys.stdin if l.strip()]; assert not any(w["alive"] for w in ws), ws' \
    < <(Z workers --json)
check "the master logged the submissions and the ends" \
    grep -q "event=alloc_ended queue=1" "$dir/log/master.log"

# 3. A master kill -9 while an allocation runs: found again, not redone.
#    The worker's idle time counts while the master is away, until it
#    registers again (liveness heartbeats: ~3 s), so its idle timeout is
#    longer than that; the restarted master's rejoin window does not
#    count (hold_ms; test_faults has the case).
Z alloc pause 1 >/dev/null
out=$(Z alloc add slurm --worker-arg=--allow-root --time-limit 10m --idle-timeout 8s --max-workers 1 --name one --json \
      -- --partition=ztask)
job=$(Z submit --json --array 1-12 -- sh -c 'sleep 1; echo "$SLURM_JOB_ID"' \
      | json 'print(json.loads(sys.stdin.read())["job"])')
q2_running() {
    Z alloc list --json | json 'qs=[json.loads(l) for l in sys.stdin if l.strip()]; q=[q for q in qs if q["id"]==2][0]; assert any(a["state"]=="running" and a["had_worker"] for a in q["allocations"]), q'
}
check "queue 2's allocation runs with its worker" until_ok 60 q2_running
before=$(Z alloc list --json | json 'qs=[json.loads(l) for l in sys.stdin if l.strip()]; q=[q for q in qs if q["id"]==2][0]; print(q["submitted"], " ".join(a["id"] for a in q["allocations"]))')
kill -9 "$master_pid"
wait "$master_pid" 2>/dev/null
start_master || bad "the master restarted"
check "after the restart the job finishes" \
    until_ok 90 bash -c "[ \"\$(timeout 30 '$bin/ztask' --master 127.0.0.1:$api status $job --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"state\"])')\" = done ]"
after=$(Z alloc list --json | json 'qs=[json.loads(l) for l in sys.stdin if l.strip()]; q=[q for q in qs if q["id"]==2][0]; print(q["submitted"], " ".join(a["id"] for a in q["allocations"]))')
check "the allocation was found again, not submitted twice (before: $before; after: $after)" \
    [ "$before" = "$after" ]

# 4. --time-request against the allocation's end: a 1-minute allocation
#    cannot take a 5-minute task; it takes a 5-second one.
Z alloc pause 2 >/dev/null
no_alive_worker() {
    Z workers --json | json 'ws=[json.loads(l) for l in sys.stdin if l.strip()]; assert not any(w["alive"] for w in ws), ws'
}
# A queue is removed (without --force) once none of its allocations is
# queued or running.
removed() { Z alloc remove "$1" >/dev/null; }
check "queue 2's worker left once idle" until_ok 30 no_alive_worker
check "queue 2 is removed once its allocation has ended" until_ok 60 removed 2
Z alloc add slurm --worker-arg=--allow-root --time-limit 1m --idle-timeout 5s --max-workers 1 --name short \
    -- --partition=ztask >/dev/null
short=$(Z submit --json --time-request 5s -- sh -c 'echo "$SLURM_JOB_ID"' \
        | json 'print(json.loads(sys.stdin.read())["job"])')
long=$(Z submit --json --time-request 5m -- echo long \
       | json 'print(json.loads(sys.stdin.read())["job"])')
check "a 5-second task ran in the 1-minute allocation" \
    until_ok 60 bash -c "timeout 30 '$bin/ztask' --master 127.0.0.1:$api status $short --json | grep -q '\"state\":\"done\"'"
# The master reads sbatch's answer at its next tick: the worker may have run
# the task before the allocation shows in alloc list, so wait for it.
short_alloc_id() {
    Z alloc list --json | json 'qs=[json.loads(l) for l in sys.stdin if l.strip()]; print([q for q in qs if q["name"]=="short"][0]["allocations"][0]["id"])'
}
until_ok 20 short_alloc_id >/dev/null
short_alloc=$(short_alloc_id 2>/dev/null)
check "... inside that allocation (Slurm job ${short_alloc:-none})" \
    bash -c "[ -n '$short_alloc' ] && timeout 30 '$bin/ztask' --master 127.0.0.1:$api results $short --json | grep -q '\"stdout\":\"$short_alloc\\\\n'"
# (its worker may have left on its idle timeout already: gone workers are listed)
check "its worker knows when the allocation ends (ends_at within the minute)" \
    json 'import time; ws=[json.loads(l) for l in sys.stdin if l.strip()]; w=[w for w in ws if str(w.get("slurm_job"))==sys.argv[1]][0]; assert 0 < w["ends_at"] - time.time() <= 61, w' \
    "$short_alloc" < <(Z workers --json)
check "the 5-minute task waits, reported unrunnable (exec~300)" \
    until_ok 10 bash -c "timeout 30 '$bin/ztask' --master 127.0.0.1:$api stats --json | grep -q 'exec~300'"
check "... and is still queued" \
    bash -c "timeout 30 '$bin/ztask' --master 127.0.0.1:$api status $long --json | grep -q '\"queued\":1'"
Z cancel "$long" >/dev/null
Z alloc pause 3 >/dev/null
check "queue 3's worker left once idle" until_ok 30 no_alive_worker
check "queue 3 is removed once its allocation has ended" until_ok 60 removed 3

# 5. sbatch refused: reported, backed off.
Z alloc add slurm --worker-arg=--allow-root --time-limit 10m --name bad -- --partition=nosuch >/dev/null
job=$(Z submit --json -- true | json 'print(json.loads(sys.stdin.read())["job"])')
failed_once() {
    Z alloc list --json | json 'qs=[json.loads(l) for l in sys.stdin if l.strip()]; q=[q for q in qs if q["name"]=="bad"][0]; assert q["failures"]>=1, q'
}
check "the failed sbatch is counted" until_ok 20 failed_once
check "alloc list says why and that it backs off" \
    bash -c "timeout 30 '$bin/ztask' --master 127.0.0.1:$api alloc list | grep 'bad' | grep -q 'backing-off.*invalid partition'"
check "the master logged it (event=alloc_failed)" \
    grep -q 'event=alloc_failed.*invalid partition' "$dir/log/master.log"
# No tight loop: the second try comes after the 5 s backoff, whatever the
# load (the master's own times of the two failures, not a sleep here).
failed_twice() {
    Z alloc list --json | json 'qs=[json.loads(l) for l in sys.stdin if l.strip()]; q=[q for q in qs if q["name"]=="bad"][0]; assert q["failures"]>=2, q'
}
until_ok 60 failed_twice
bad_id=$(Z alloc list --json | json 'qs=[json.loads(l) for l in sys.stdin if l.strip()]; print([q for q in qs if q["name"]=="bad"][0]["id"])')
gap=$(grep "event=alloc_failed queue=$bad_id " "$dir/log/master.log" | head -n 2 | json '
import datetime
t=[datetime.datetime.strptime(l.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ") for l in sys.stdin]
print("%.1f" % (t[1]-t[0]).total_seconds())')
check "no tight loop: the second sbatch failed ${gap:-?} s after the first (backoff 5 s)" \
    json 'assert float(sys.argv[1]) >= 5.0' "${gap:-0}"
Z cancel "$job" >/dev/null
Z alloc pause "$bad_id" >/dev/null

# 6. alloc remove while the queue has allocations in Slurm.
queue_id() {   # queue_id NAME
    Z alloc list --json | json 'qs=[json.loads(l) for l in sys.stdin if l.strip()]; print([q for q in qs if q["name"]==sys.argv[1]][0]["id"])' "$1"
}
alloc_in() {   # alloc_in NAME STATE: the id of its allocation in STATE (with a worker when running)
    Z alloc list --json | json '
qs=[json.loads(l) for l in sys.stdin if l.strip()]; q=[q for q in qs if q["name"]==sys.argv[1]][0]
a=[a for a in q["allocations"] if a["state"]==sys.argv[2] and (a["had_worker"] or sys.argv[2]!="running")]
assert a, q; print(a[0]["id"])' "$1" "$2"
}
in_slurm() {   # in_slurm ID: squeue lists it pending or running
    [ -n "$(squeue -h -j "$1" -t pending,running -o %i 2>/dev/null)" ]
}
# refused NAME ID STATE: alloc remove of NAME fails with one line naming
# ID (STATE) and --force, and the queue stays.
refused() {
    local q out rc
    q=$(queue_id "$1")
    out=$(Z alloc remove "$q" 2>&1)
    rc=$?
    echo "      (exit $rc: $out)"
    [ "$rc" -ne 0 ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] \
        && grep -q "$2 ($3)" <<<"$out" && grep -q -- "--force" <<<"$out" \
        && [ "$(queue_id "$1")" = "$q" ]
}
# forced NAME ID: alloc remove --force --json answers the queue, which is
# gone from alloc list, and Slurm no longer has ID queued or running.
forced() {
    local q out
    q=$(queue_id "$1")
    out=$(Z alloc remove "$q" --force --json) || return 1
    json 'q=json.loads(sys.argv[1]); assert q["id"]==int(sys.argv[2]) and any(a["id"]==sys.argv[3] for a in q["allocations"]), q' \
        "$out" "$q" "$2" || return 1
    ! queue_id "$1" >/dev/null 2>&1 || return 1
    gone() { ! in_slurm "$1"; }
    until_ok 30 gone "$2"
}
Z alloc add slurm --worker-arg=--allow-root --time-limit 10m --idle-timeout 10m --max-workers 1 --name busy \
    -- --partition=ztask >/dev/null
job=$(Z submit --json -- sleep 300 | json 'print(json.loads(sys.stdin.read())["job"])')
busy_running() { alloc_in busy running >/dev/null; }
check "queue busy's allocation runs the task's worker" until_ok 60 busy_running
busy=$(alloc_in busy running 2>/dev/null)
check "alloc remove of a queue whose allocation $busy runs is refused, naming it" refused busy "$busy" running
check "alloc remove --force cancels allocation $busy (scancel) and forgets the queue" forced busy "$busy"
check "... its worker is gone" until_ok 30 no_alive_worker
check "... and the master logged the cancel (event=alloc_cancelled)" \
    grep -q "event=alloc_cancelled slurm_jobs=\"$busy\"" "$dir/log/master.log"
check "... which killed its task (Slurm's signal: failed, as any task killed)" \
    bash -c "timeout 30 '$bin/ztask' --master 127.0.0.1:$api status $job --json | grep -q '\"state\":\"failed\"'"
# A queue whose allocations cannot start for an hour (sbatch --begin)
# gets one that stays pending for a waiting task.
job=$(Z submit --json -- true | json 'print(json.loads(sys.stdin.read())["job"])')
Z alloc add slurm --worker-arg=--allow-root --time-limit 10m --max-workers 1 --name later \
    -- --partition=ztask --begin=now+3600 >/dev/null
later_pending() { a=$(alloc_in later queued) && in_slurm "$a"; }
check "queue later's allocation is pending in Slurm" until_ok 30 later_pending
later=$(alloc_in later queued 2>/dev/null)
check "alloc remove of a queue whose allocation $later is pending is refused, naming it" refused later "$later" queued
check "alloc remove --force cancels the pending allocation $later" forced later "$later"
Z cancel "$job" >/dev/null

echo
echo "slurm: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
