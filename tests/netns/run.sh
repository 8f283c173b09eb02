#!/usr/bin/env bash
# ztask across real hosts: four network namespaces on a private bridge.
#
#   tests/netns/run.sh [BUILD_DIR]        (default build/release; needs root)
#
#   ns "m"   10.77.0.1  ztask-master --bind 10.77.0.1, CURVE keys, allowlists
#   ns "w1"  10.77.0.2  ztask-worker --threads 4 (flags; --allow-exec)
#   ns "w2"  10.77.0.3  ztask-worker --threads 4 (config file)
#   ns "c"   10.77.0.4  the ztask CLI (config file), and the intruders
#   ns "br"             the bridge the four veth pairs hang on
#
# Everything lives in namespaces this script creates (named ztask-PID-*): the
# bridge is in its own namespace, nothing touches the root namespace's
# links or routes, and there is no default route anywhere. The namespaces,
# their processes and the temporary directory are removed on any exit
# (ZTASK_TEST_KEEP=1 keeps the directory, with every log).
#
# Checks: a 5,000-task job (1,000 on sanitizer builds) spread over both
# worker hosts, each task exactly once; a worker host's link cut for 10 s
# mid-job (the master declares it lost within liveness x heartbeat + 2 s,
# the tasks it held finish on the other host and the job completes before
# the link comes back; then it registers again and its stale results are
# counted as duplicates and leave the job's records byte-identical); every
# process of a worker host killed mid-job; clients without keys, with an
# unlisted key, with a wrong master key, a worker key used to submit, a
# client key used to register: all refused; SIGHUP
# admits and revokes a key; another client's key sees none of the first
# client's jobs; --allow-exec refuses an unlisted program; the
# master refuses a non-loopback bind without keys. Ends with "N passed,
# N failed". Every wait is bounded; the whole run takes about a minute.
# SKIP (exit 0) only where it cannot run at all: not root, no ip, or no
# network namespace can be created; any later setup failure is a FAIL.
set -u

if [ "$(id -u)" != 0 ]; then
    echo "SKIP: tests/netns needs root (it creates network namespaces with ip netns)"
    exit 0
fi
if ! command -v ip >/dev/null 2>&1; then
    echo "SKIP: tests/netns needs ip (iproute2)"
    exit 0
fi

build=${1:-build/release}
BIN=$(cd "$build/bin" 2>/dev/null && pwd) || { echo "no $build/bin: run make first"; exit 2; }
# Sanitizer builds run commands several times slower (ASan and TSan workers
# fork instead of CLONE_VFORK): the job deadlines below scale with it.
# Their spread job is 1,000 tasks, not 5,000: what they add to the release
# run is a sanitizer watching the same paths (CURVE over the bridge, both
# hosts taking tasks), which 1,000 tasks take as 5,000 do, and under TSan
# the 5,000 were minutes of make tsan (over 4 at load 12 here).
case "$build" in
    *asan* | *tsan*) SLOW=3 N1=1000 ;;
    *) SLOW=1 N1=5000 ;;
esac
for p in ztask ztask-master ztask-worker; do
    [ -x "$BIN/$p" ] || { echo "no $BIN/$p: run make first"; exit 2; }
done

# As tests/run.sh: uninstrumented libzmq/libsodium are suppressed under TSan.
case "$build" in
  *tsan*) export TSAN_OPTIONS="suppressions=$(pwd)/tests/tsan.supp halt_on_error=1 ${TSAN_OPTIONS:-}" ;;
esac

passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "ok    $*"; }
bad()  { failed=$((failed + 1)); echo "FAIL  $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
note() { echo "      $*"; }

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# wait_until SECONDS CMD...: polls CMD (an outside process's state, which
# offers nothing to block on) every 0.2 s; 1 when it never succeeded.
wait_until() {
    local end=$(( $(now_ms) + $1 * 1000 )); shift
    until "$@" >/dev/null 2>&1; do
        [ "$(now_ms)" -ge "$end" ] && return 1
        sleep 0.2
    done
}

P="ztask-$$"
NS_M=$P-m NS_W1=$P-w1 NS_W2=$P-w2 NS_C=$P-c NS_BR=$P-br
ALL_NS=("$NS_M" "$NS_W1" "$NS_W2" "$NS_C" "$NS_BR" "$P-probe")
MASTER_IP=10.77.0.1
PORT=5555
# The master's failure detector (given to it explicitly: the link-cut
# check's deadline is computed from them).
HB_MS=1000 LIVENESS=3
tmp=$(mktemp -d /tmp/ztask-netns-XXXXXX)

# Kills every process in our namespaces (the programs and their tasks),
# then deletes the namespaces, which takes their veths and the bridge.
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for ns in "${ALL_NS[@]}"; do
        local pids
        pids=$(ip netns pids "$ns" 2>/dev/null)
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    done
    for ns in "${ALL_NS[@]}"; do
        local end=$(( $(now_ms) + 5000 ))
        while [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && [ "$(now_ms)" -lt "$end" ]; do
            sleep 0.1
        done
        ip netns del "$ns" 2>/dev/null
    done
    if [ "${ZTASK_TEST_KEEP:-0}" = 1 ] || [ $failed -gt 0 ]; then
        echo "logs kept in $tmp"
    else
        rm -rf "$tmp"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- network

net_setup() {
    ip netns add "$NS_BR" || return 1
    ip -n "$NS_BR" link set lo up
    ip -n "$NS_BR" link add br0 type bridge || return 1
    ip -n "$NS_BR" link set br0 up
    local i=1
    for pair in "$NS_M:m" "$NS_W1:w1" "$NS_W2:w2" "$NS_C:c"; do
        local ns=${pair%%:*} port=veth-${pair##*:}
        ip netns add "$ns" || return 1
        ip -n "$ns" link set lo up
        # One end (eth0) inside the host, the other on the bridge.
        ip -n "$NS_BR" link add "$port" type veth peer name eth0 netns "$ns" || return 1
        ip -n "$NS_BR" link set "$port" master br0
        ip -n "$NS_BR" link set "$port" up
        ip -n "$ns" addr add "10.77.0.$i/24" dev eth0
        ip -n "$ns" link set eth0 up
        i=$((i + 1))
    done
}
# A machine (or container) where root cannot create a network namespace
# at all (no CAP_SYS_ADMIN, no writable /run/netns) cannot run this test:
# say so and skip. Once one can be created, failing to build the rest of
# the network (veth, bridge, addresses) is a failure.
if ! ip netns add "$P-probe" 2>"$tmp/net.err"; then
    echo "SKIP: tests/netns cannot create a network namespace here (needs CAP_SYS_ADMIN): $(head -n 1 "$tmp/net.err")"
    exit 0
fi
ip netns del "$P-probe"
if ! net_setup 2>"$tmp/net.err"; then
    bad "network: could not build four hosts on a private bridge (veth, bridge):"
    sed 's/^/      /' "$tmp/net.err"
    echo
    echo "$passed passed, $failed failed"
    exit 1
fi
ok "network: four hosts on a private bridge"

# ---------------------------------------------------------------- keys

mkdir -p "$tmp/master" "$tmp/clients" "$tmp/workers" "$tmp/client" "$tmp/w1" "$tmp/w2" \
    "$tmp/outsider"
keygen() { "$BIN/ztask" keygen "$1" --dir "$2" >/dev/null; }
keygen master "$tmp/master" && keygen ana "$tmp/client" && keygen w1 "$tmp/w1" \
    && keygen w2 "$tmp/w2" && keygen eve "$tmp/outsider"
check "keys: ztask keygen made every pair" test -f "$tmp/outsider/eve.key"
check "keys: secret keys are 0600" test "$(stat -c %a "$tmp/client/ana.key")" = 600
cp "$tmp/client/ana.pub" "$tmp/clients/"
cp "$tmp/w1/w1.pub" "$tmp/w2/w2.pub" "$tmp/workers/"
cp "$tmp/master/master.pub" "$tmp/client/"
cp "$tmp/master/master.pub" "$tmp/w2/"

# The client and w2 are configured through config files (relative paths
# are relative to the file); w1 through flags.
cat >"$tmp/client/config" <<EOF
# the client host's ztask config
master = $MASTER_IP:$PORT
curve-secret = ana.key
master-key = master.pub
request-timeout = 5
EOF
cat >"$tmp/w2/config" <<EOF
master = $MASTER_IP:$PORT
curve-secret = w2.key
master-key = master.pub
threads = 4
name = w2-host
labels = blue
EOF
: >"$tmp/empty.conf"

# ---------------------------------------------------------------- programs

start_master() {
    ip netns exec "$NS_M" "$BIN/ztask-master" --db "$tmp/master.db" --bind "$MASTER_IP" \
        --port "$PORT" --task-ports 6000-6099 --curve-secret "$tmp/master/master.key" \
        --clients "$tmp/clients" --workers "$tmp/workers" --heartbeat-ms "$HB_MS" \
        --liveness "$LIVENESS" --log-level debug >>"$tmp/master.log" 2>&1 &
    MASTER_PID=$!
}
start_w1() {
    ip netns exec "$NS_W1" env ZTASK_CONFIG="$tmp/empty.conf" "$BIN/ztask-worker" \
        --master "$MASTER_IP:$PORT" --curve-secret "$tmp/w1/w1.key" \
        --master-key "$tmp/master/master.pub" --threads 4 --name w1-host --label red \
        --allow-exec /bin/echo,/bin/sleep >>"$tmp/w1.log" 2>&1 &
    disown   # killed by cleanup; no "Killed" notice from bash
}
start_w2() {
    ip netns exec "$NS_W2" env ZTASK_CONFIG="$tmp/w2/config" "$BIN/ztask-worker" \
        >>"$tmp/w2.log" 2>&1 &
    disown
}
# The CLI on the client host, with its config file; its stderr goes to
# cli.log (kept when a check fails, and searched for sanitizer reports).
zc() { ip netns exec "$NS_C" env ZTASK_CONFIG="$tmp/client/config" "$BIN/ztask" "$@" \
        2>>"$tmp/cli.log"; }
# The CLI on the client host with no config, for the intruders.
zx() { ip netns exec "$NS_C" env ZTASK_CONFIG="$tmp/empty.conf" "$BIN/ztask" \
        --master "$MASTER_IP:$PORT" --request-timeout 20 "$@"; }

master_log_has() { grep -q -- "$1" "$tmp/master.log"; }
count_in_master_log() { grep -c -- "$1" "$tmp/master.log"; }
# The CLI's --json records have a fixed shape (docs/protocol.md section
# 6), flat but for the labels array, so sed and awk read them; this test
# needs nothing beyond bash, coreutils, awk and iproute2.
alive_workers() { zc workers --json | grep -c '"alive":true'; }
workers_alive_is() { [ "$(alive_workers)" = "$1" ]; }
# Tasks running now on the live worker named $1.
running_on() {
    zc workers --json | grep -F "\"worker\":\"$1\"" | grep '"alive":true' \
        | sed -n 's/.*"running":\([0-9]*\).*/\1/p'
}
has_running() { [ "$(running_on "$1")" -gt 0 ] 2>/dev/null; }
duplicates() { zc stats --json | sed -n 's/.*"duplicates":\([0-9]*\).*/\1/p'; }
job_of() { sed -n 's/^job \([0-9]*\):.*/\1/p' | head -n 1; }

# check_results JOB N [WORKER...]: every index 0..N-1 exactly once, all
# done; each named worker ran some. Prints the split.
check_results() {
    local job=$1 n=$2; shift 2
    zc results "$job" --json >"$tmp/results-$job.jsonl" || return 1
    awk -v n="$n" -v need="$*" '
    {
        total++
        if (!match($0, /"index":-?[0-9]+/)) { noindex++; next }
        i = substr($0, RSTART + 8, RLENGTH - 8) + 0
        cnt[i]++
        w = "null"
        if (match($0, /"worker":"[^"]*"/)) w = substr($0, RSTART + 10, RLENGTH - 11)
        by[w]++
        if ($0 !~ /"status":"done"/) {
            notdone++
            if (!first) first = $0
        }
    }
    END {
        for (i = 0; i < n; i++) {
            if (!(i in cnt)) missing++
            else if (cnt[i] > 1) twice++
        }
        for (k in cnt) if (k + 0 < 0 || k + 0 >= n) extra++
        printf "      tasks=%d by worker:", total
        for (w in by) printf " %s=%d", w, by[w]
        printf "\n"
        m = split(need, nd, " ")
        for (j = 1; j <= m; j++) if (!(nd[j] in by)) lacking = lacking " " nd[j]
        ok = !missing && !twice && !extra && !notdone && !noindex && lacking == ""
        if (!ok) {
            printf "      missing=%d twice=%d extra=%d not-done=%d no-index=%d idle:%s\n",
                missing, twice, extra, notdone, noindex, lacking
            if (first) print "      first not done: " substr(first, 1, 300)
        }
        exit ok ? 0 : 1
    }' "$tmp/results-$job.jsonl"
}

start_master
wait_until 10 master_log_has "event=listening" \
    && ok "master: listening on $MASTER_IP:$PORT with CURVE" \
    || { bad "master: did not start"; cat "$tmp/master.log"; exit 1; }
tcp_reach() { ip netns exec "$1" timeout 5 bash -c "exec 3<>/dev/tcp/$MASTER_IP/$PORT"; }
check "network: the client host reaches the master's port over the bridge" tcp_reach "$NS_C"
start_w1
start_w2
wait_until 15 workers_alive_is 2 \
    && ok "workers: both worker hosts registered over CURVE" \
    || bad "workers: both worker hosts registered (alive: $(alive_workers))"
zc workers | sed 's/^/      /'
labels_shown() {
    zc workers | grep w1-host | grep -q red && zc workers | grep w2-host | grep -q blue
}
check "workers: labels reported (w1 red, w2 blue)" labels_shown

# ---------------------------------------------------------------- 5,000 tasks

t0=$(now_ms)
J1=$(zc submit --array 0-$((N1 - 1)) --name spread -- /bin/echo {} | job_of)
zc wait "$J1" --timeout $((90 * SLOW)) --quiet
check "$N1 tasks: the job finished with every task done" test $? = 0
note "took $(( ($(now_ms) - t0) ))ms"
check "$N1 tasks: every index exactly once, both worker hosts ran some" \
    check_results "$J1" "$N1" w1-host w2-host
# Each task's stdout is its own index: "index":7 ... "stdout":"7\n".
own_index() {
    awk '{
        match($0, /"index":[0-9]+/); i = substr($0, RSTART + 8, RLENGTH - 8)
        if (index($0, "\"stdout\":\"" i "\\n\"") == 0) bad++
    } END { exit bad ? 1 : 0 }' "$tmp/results-$J1.jsonl"
}
check "$N1 tasks: each task printed its own index" own_index

# --allow-exec on w1: a program not on its list fails at once, with the reason.
J=$(zc submit --require red -- /usr/bin/id | job_of)
zc wait "$J" --timeout $((20 * SLOW)) --quiet
zc results "$J" --json >"$tmp/refused.jsonl"
check "allow-exec: a program outside w1's list fails with a clear error" \
    grep -q "program '/usr/bin/id' is not in this worker's --allow-exec list" "$tmp/refused.jsonl"

# ---------------------------------------------------------------- link cut

# w1's link goes down while it runs tasks of J2. The master must declare it
# lost after the heartbeat timeout and take back exactly the tasks it held
# (the debug events "requeued ... why=heartbeat_timeout" logged just
# before its worker_lost event, in one loop); those finish on w2 and the
# job completes while w1 is still cut off. The job's records are then
# saved, the link comes back, w1 registers again and reports the results
# it kept: each must be a duplicate and the job's records must not change.
# The job is small enough to finish on w2 alone within the 10 s cut (the
# tasks taken back are suspects and rerun one at a time; a slower build
# keeps the link down until the job is done).
N2=32
CUT_MS=10000
lost_line() { grep "event=worker_lost worker=w1-host " "$tmp/master.log" | tail -n 1; }
# log_ms LINE: a log line's timestamp (2026-01-02T03:04:05.678Z), in ms.
log_ms() { date -d "${1%% *}" +%s%3N; }
# held_at_loss: "task attempt" lines, the tasks taken back from w1 when it
# was lost (the requeued events right before its last worker_lost event).
held_at_loss() {
    awk '
    / event=requeued / && / why=heartbeat_timeout/ {
        match($0, /task=[0-9]+/); t = substr($0, RSTART + 5, RLENGTH - 5)
        match($0, /attempt=[0-9]+/); a = substr($0, RSTART + 8, RLENGTH - 8)
        buf = buf t " " a "\n"
        next
    }
    / event=worker_lost worker=w1-host / { held = buf }
    { buf = "" }
    END { printf "%s", held }' "$tmp/master.log"
}
# held_ran_on_w2 FILE: in the results FILE, every task w1 held is done, by
# w2-host, in a later attempt than the one w1 held (so attempts >= 2).
held_ran_on_w2() {
    awk '
    NR == FNR { held[$1] = $2; n++; next }
    {
        match($0, /"task":[0-9]+/); t = substr($0, RSTART + 7, RLENGTH - 7)
        if (!(t in held)) next
        seen++
        match($0, /"attempts":[0-9]+/); a = substr($0, RSTART + 11, RLENGTH - 11) + 0
        w = "null"
        if (match($0, /"worker":"[^"]*"/)) w = substr($0, RSTART + 10, RLENGTH - 11)
        if ($0 !~ /"status":"done"/ || w != "w2-host" || a < 2 || a <= held[t]) {
            wrong++
            print "      not rerun on w2: " substr($0, 1, 160)
        }
    }
    END {
        if (seen != n) print "      held tasks found in the results: " seen + 0 " of " n
        exit n > 0 && seen == n && !wrong ? 0 : 1
    }' "$tmp/held" "$1"
}
# w1_dups: the duplicate_result events from w1 since it was lost, as "task
# attempt" lines.
w1_dups() {
    awk '
    / event=worker_lost worker=w1-host / { after = 1; out = ""; next }
    after && / event=duplicate_result / && / worker=w1-host( |$)/ {
        match($0, /task=[0-9]+/); t = substr($0, RSTART + 5, RLENGTH - 5)
        match($0, /attempt=[0-9]+/); a = substr($0, RSTART + 8, RLENGTH - 8)
        out = out t " " a "\n"
    }
    END { printf "%s", out }' "$tmp/master.log"
}
# Every duplicate from w1 is a result of a task it held, in that attempt.
dups_were_held() {
    [ -s "$tmp/w1-dups" ] && awk 'NR == FNR { held[$1 " " $2] = 1; next }
        !($0 in held) { print "      not a task w1 held: " $0; bad++ }
        END { exit bad ? 1 : 0 }' "$tmp/held" "$tmp/w1-dups"
}
w1_registered_again() {
    [ "$(count_in_master_log "event=worker_registered worker=w1-host ")" -gt "$reg0" ]
}

dups0=$(duplicates)
reg0=$(count_in_master_log "event=worker_registered worker=w1-host ")
t0=$(now_ms)
J2=$(zc submit --array 0-$((N2 - 1)) --name cut -- /bin/sleep 0.6 | job_of)
if wait_until 20 has_running w1-host; then
    note "w1 runs $(running_on w1-host) tasks; cutting its link"
    ip -n "$NS_W1" link set eth0 down
    cut_at=$(now_ms)

    # Lost after the heartbeat timeout: not before (LIVENESS - 1) beats
    # were missed (the last one came up to a beat before the cut), not
    # later than LIVENESS beats + 2 s.
    lo=$(( (LIVENESS - 1) * HB_MS - 500 )) hi=$(( LIVENESS * HB_MS + 2000 * SLOW ))
    if wait_until $(( (hi + 5000) / 1000 )) master_log_has "event=worker_lost worker=w1-host "; then
        lost_after=$(( $(log_ms "$(lost_line)") - cut_at ))
        check "link cut: the master declared w1 lost after the heartbeat timeout (${lost_after}ms after the cut; ${lo}..${hi}ms)" \
            test "$lost_after" -ge "$lo" -a "$lost_after" -le "$hi"
        lost_for_heartbeats() { lost_line | grep -q " why=heartbeat_timeout "; }
        check "link cut: w1 was lost for missed heartbeats (why=heartbeat_timeout)" \
            lost_for_heartbeats
    else
        bad "link cut: the master declared w1 lost (no worker_lost event in $(( hi + 5000 ))ms)"
    fi
    lost_line | sed 's/^/      /'
    held_at_loss >"$tmp/held"
    nheld=$(grep -c . "$tmp/held")
    requeued=$(lost_line | sed -n 's/.*requeued=\([0-9]*\).*/\1/p')
    check "link cut: the master took back the $nheld tasks w1 held (requeued=${requeued:-?})" \
        test "$nheld" -gt 0 -a "$nheld" = "${requeued:--1}"

    # The job completes while w1 is away: nothing lost, w1's tasks on w2.
    zc wait "$J2" --timeout $((60 * SLOW)) --quiet
    check "link cut: the job finished with every task done while w1 was cut off" test $? = 0
    note "took $(( $(now_ms) - t0 ))ms"
    check "link cut: every index exactly once (0 lost)" check_results "$J2" "$N2" w2-host
    check "link cut: the $nheld tasks w1 held ran again on w2 (attempts >= 2)" \
        held_ran_on_w2 "$tmp/results-$J2.jsonl"
    cp "$tmp/results-$J2.jsonl" "$tmp/results-$J2.before"
    # Saved before any stale result could arrive: w1 has not registered
    # again and the master has counted no duplicate yet.
    cut_off_still() {
        [ "$(count_in_master_log "event=worker_registered worker=w1-host ")" = "$reg0" ] \
            && [ "$(duplicates)" = "$dups0" ]
    }
    check "link cut: the job's results saved while w1 is cut off (no duplicate yet)" cut_off_still

    # The rest of the cut: this sleep is the scenario's length (10 s of
    # link down), not a wait for anything.
    left=$(( CUT_MS - ($(now_ms) - cut_at) ))
    [ $left -gt 0 ] && sleep "$(awk "BEGIN{print $left/1000}")"
    ip -n "$NS_W1" link set eth0 up
    note "link back after $(( $(now_ms) - cut_at ))ms"

    wait_until 30 w1_registered_again \
        && ok "link cut: w1 registered again when its link came back" \
        || bad "link cut: w1 registered again when its link came back"
    grep "event=worker_registered worker=w1-host " "$tmp/master.log" | tail -n 1 | sed 's/^/      /'
    # The tasks w1 held finished there; their results waited in its report
    # queue and arrive now, each one a duplicate. (A task still in flight to
    # w1 at the cut never reached it and has no stale result: at least one.)
    dups_all() { [ $(( $(duplicates) - dups0 )) -ge "$nheld" ]; }
    wait_until 20 dups_all || note "not all $nheld held tasks came back as duplicates in 20 s"
    w1_dups >"$tmp/w1-dups"
    check "link cut: w1's stale results were counted as duplicates ($(( $(duplicates) - dups0 )) more; $(grep -c . "$tmp/w1-dups") duplicate_result events from w1)" \
        test $(( $(duplicates) - dups0 )) -ge 1 -a "$(grep -c . "$tmp/w1-dups")" -ge 1
    check "link cut: every stale result was for a task w1 held, in the attempt it held" dups_were_held
    check "link cut: still every index exactly once after the stale results" check_results "$J2" "$N2"
    check "link cut: the stale results left the job's records byte-identical" \
        cmp -s "$tmp/results-$J2.before" "$tmp/results-$J2.jsonl"
else
    bad "link cut: w1 never ran tasks of the job"
fi
ip -n "$NS_W1" link set eth0 up 2>/dev/null
wait_until 15 workers_alive_is 2 || true

# ---------------------------------------------------------------- kill -9

t0=$(now_ms)
J3=$(zc submit --array 0-119 --name kill -- /bin/sleep 0.6 | job_of)
if wait_until 20 has_running w2-host; then
    note "w2 runs $(running_on w2-host) tasks; kill -9 of every process in its namespace"
    pids=$(ip netns pids "$NS_W2")
    # A host dies all at once. kill -9 of one process after another would
    # let the worker see its task die first and report "killed by signal
    # 9" as the task's (failed) result; so stop them all, wait until none
    # can run, then kill. (A task may end between the listing and its kill.)
    kill -STOP $pids 2>/dev/null
    all_stopped() {
        local p st
        for p in $pids; do
            st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || continue
            [ -z "$st" ] || [ "$st" = T ] || [ "$st" = Z ] || return 1
        done
    }
    wait_until 5 all_stopped || note "not every process stopped in 5 s"
    kill -9 $pids 2>/dev/null
    note "stopped, then killed $(echo $pids | wc -w) processes"
    w2_empty() { [ -z "$(ip netns pids "$NS_W2")" ]; }
    wait_until 5 w2_empty \
        && ok "kill -9: every process of w2's host is gone" \
        || bad "kill -9: every process of w2's host is gone"
    wait_until 15 master_log_has "event=worker_lost worker=w2-host" \
        && ok "kill -9: the master declared w2 lost" \
        || bad "kill -9: the master declared w2 lost"
else
    bad "kill -9: w2 never ran tasks of the job"
fi
zc wait "$J3" --timeout $((90 * SLOW)) --quiet
check "kill -9: the job finished with every task done" test $? = 0
note "took $(( ($(now_ms) - t0) ))ms"
check "kill -9: every index exactly once, the rest ran on w1" check_results "$J3" 120 w1-host

# ---------------------------------------------------------------- intruders

jobs_count() { zc jobs --json | grep -c '"id"'; }
njobs=$(jobs_count)
# expect_auth WHAT CMD...: exit 6, "authentication failed", well inside
# the 20 s request timeout.
expect_auth() {
    local what=$1; shift
    local t=$(now_ms)
    "$@" >"$tmp/intruder.out" 2>&1
    local rc=$? ms=$(( $(now_ms) - t ))
    cat "$tmp/intruder.out" >>"$tmp/intruders.log"
    if [ $rc = 6 ] && grep -q "authentication failed" "$tmp/intruder.out" && [ $ms -lt 5000 ]; then
        ok "$what (exit 6 in ${ms}ms)"
        sed 's/^/      /' "$tmp/intruder.out"
    else
        bad "$what (exit $rc in ${ms}ms)"
        sed 's/^/      /' "$tmp/intruder.out"
    fi
}
expect_auth "no keys: submit refused" zx submit -- /bin/echo pwned
expect_auth "unlisted key: submit refused" \
    zx --curve-secret "$tmp/outsider/eve.key" --master-key "$tmp/master/master.pub" \
    submit -- /bin/echo pwned
check "unlisted key: the master logged the refused key" \
    grep -q "event=auth_refused .*key=$(sed -n 's/^public-key = "\(.*\)"/\1/p' "$tmp/outsider/eve.pub" | sed 's/[][\.*^$/]/\\&/g')" \
    "$tmp/master.log"
expect_auth "wrong master key: refused" \
    zx --curve-secret "$tmp/client/ana.key" --master-key "$tmp/outsider/eve.pub" jobs
expect_auth "worker key: submit refused" \
    zx --curve-secret "$tmp/w1/w1.key" --master-key "$tmp/master/master.pub" \
    submit -- /bin/echo pwned
check "intruders: no new job on the master" test "$(jobs_count)" = "$njobs"

# A client key cannot register as a worker.
ip netns exec "$NS_C" env ZTASK_CONFIG="$tmp/empty.conf" "$BIN/ztask-worker" \
    --master "$MASTER_IP:$PORT" --curve-secret "$tmp/client/ana.key" \
    --master-key "$tmp/master/master.pub" --threads 1 --name impostor >"$tmp/impostor.log" 2>&1 &
impostor=$!
wait_until 10 grep -q "event=hello_failed.*not allowed to register as a worker" "$tmp/impostor.log" \
    && ok "client key: cannot register as a worker" \
    || bad "client key: cannot register as a worker"
no_impostor() { zc workers >"$tmp/workers.txt" && ! grep -q impostor "$tmp/workers.txt"; }
check "client key: no worker 'impostor' on the master" no_impostor
kill "$impostor" 2>/dev/null
wait "$impostor" 2>/dev/null

# SIGHUP: an added key is admitted, a removed one is refused again.
cp "$tmp/outsider/eve.pub" "$tmp/clients/"
kill -HUP "$MASTER_PID"
eve_jobs() { zx --curve-secret "$tmp/outsider/eve.key" --master-key "$tmp/master/master.pub" jobs; }
wait_until 10 eve_jobs && ok "SIGHUP: a key added to --clients is admitted" \
    || bad "SIGHUP: a key added to --clients is admitted"
# Jobs have owners: eve, another client, sees none of ana's jobs and
# cannot read one; ana still sees hers.
as_eve() { zx --curve-secret "$tmp/outsider/eve.key" --master-key "$tmp/master/master.pub" "$@"; }
eve_sees_none() { [ "$(as_eve jobs --json | grep -c '"job"')" = 0 ]; }
check "owners: another client's key lists none of ana's jobs" eve_sees_none
eve_refused_j1() { as_eve status "$J1" >/dev/null 2>&1; [ $? = 4 ]; }
check "owners: another client's key gets 'no job' for ana's job" eve_refused_j1
ana_sees_j1() { zc status "$J1" --json | grep -q "\"job\":$J1,"; }
check "owners: ana still sees her job" ana_sees_j1
rm "$tmp/clients/eve.pub"
kill -HUP "$MASTER_PID"
eve_refused() { eve_jobs >/dev/null 2>&1; [ $? = 6 ]; }
wait_until 10 eve_refused \
    && ok "SIGHUP: a key removed from --clients is refused again" \
    || bad "SIGHUP: a key removed from --clients is refused again"

# Without keys the master will not listen beyond loopback (exit at once;
# 124 would be timeout's: it listened).
timeout 10 ip netns exec "$NS_M" "$BIN/ztask-master" --db :memory: --bind "$MASTER_IP" \
    --port 7555 >"$tmp/nokeys.log" 2>&1
rc=$?
refused_bind() { [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q -- --insecure "$tmp/nokeys.log"; }
check "no keys: the master refuses to bind $MASTER_IP (exit $rc)" refused_bind
sed 's/^/      /' "$tmp/nokeys.log" | head -n 3

# ---------------------------------------------------------------- shutdown

kill -TERM "$MASTER_PID"
mrc=124
end=$(( $(now_ms) + 10000 ))
while [ "$(now_ms)" -lt "$end" ]; do
    if ! kill -0 "$MASTER_PID" 2>/dev/null; then wait "$MASTER_PID"; mrc=$?; break; fi
    sleep 0.1
done
check "master: SIGTERM stops it with exit 0" test "$mrc" = 0
no_reports() {
    ! grep -l -E 'ERROR: (Address|Leak|Undefined)Sanitizer|WARNING: ThreadSanitizer|runtime error:' \
        "$tmp"/*.log
}
check "no sanitizer reports in any log" no_reports

echo
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
