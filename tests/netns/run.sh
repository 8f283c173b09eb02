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
# Checks: a 5,000-task job spread over both worker hosts, each task exactly
# once; a worker host's link cut for 10 s mid-job (lost after the heartbeat
# timeout, its tasks rerun elsewhere, it comes back, its stale results are
# duplicates); every process of a worker host killed mid-job; clients
# without keys, with an unlisted key, with a wrong master key, a worker
# key used to submit, a client key used to register: all refused; SIGHUP
# admits and revokes a key; --allow-exec refuses an unlisted program; the
# master refuses a non-loopback bind without keys. Ends with "N passed,
# N failed". Every wait is bounded; the whole run takes about a minute.
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
case "$build" in
    *asan* | *tsan*) SLOW=3 ;;
    *) SLOW=1 ;;
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
ALL_NS=("$NS_M" "$NS_W1" "$NS_W2" "$NS_C" "$NS_BR")
MASTER_IP=10.77.0.1
PORT=5555
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
# A machine (or container) that cannot build the network is not a ztask
# failure: say so and skip.
if ! net_setup 2>"$tmp/net.err"; then
    echo "SKIP: tests/netns cannot build its network here (needs CAP_SYS_ADMIN, veth and bridge): $(head -n 1 "$tmp/net.err")"
    exit 0
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
        --clients "$tmp/clients" --workers "$tmp/workers" >>"$tmp/master.log" 2>&1 &
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
J1=$(zc submit --array 0-4999 --name spread -- /bin/echo {} | job_of)
zc wait "$J1" --timeout $((90 * SLOW)) --quiet
check "5,000 tasks: the job finished with every task done" test $? = 0
note "took $(( ($(now_ms) - t0) ))ms"
check "5,000 tasks: every index exactly once, both worker hosts ran some" \
    check_results "$J1" 5000 w1-host w2-host
# Each task's stdout is its own index: "index":7 ... "stdout":"7\n".
own_index() {
    awk '{
        match($0, /"index":[0-9]+/); i = substr($0, RSTART + 8, RLENGTH - 8)
        if (index($0, "\"stdout\":\"" i "\\n\"") == 0) bad++
    } END { exit bad ? 1 : 0 }' "$tmp/results-$J1.jsonl"
}
check "5,000 tasks: each task printed its own index" own_index

# --allow-exec on w1: a program not on its list fails at once, with the reason.
J=$(zc submit --require red -- /usr/bin/id | job_of)
zc wait "$J" --timeout $((20 * SLOW)) --quiet
zc results "$J" --json >"$tmp/refused.jsonl"
check "allow-exec: a program outside w1's list fails with a clear error" \
    grep -q "program '/usr/bin/id' is not in this worker's --allow-exec list" "$tmp/refused.jsonl"

# ---------------------------------------------------------------- link cut

dups0=$(duplicates)
reg0=$(count_in_master_log "event=worker_registered worker=w1-host ")
t0=$(now_ms)
J2=$(zc submit --array 0-159 --name cut -- /bin/sleep 0.6 | job_of)
if wait_until 20 has_running w1-host; then
    note "w1 runs $(running_on w1-host) tasks; cutting its link for 10 s"
    ip -n "$NS_W1" link set eth0 down
    cut_at=$(now_ms)
    wait_until 15 master_log_has "event=worker_lost worker=w1-host" \
        && ok "link cut: the master declared w1 lost ($(( $(now_ms) - cut_at ))ms after the cut)" \
        || bad "link cut: the master declared w1 lost"
    grep "event=worker_lost worker=w1-host" "$tmp/master.log" | tail -n 1 | sed 's/^/      /'
    left=$(( 10000 - ($(now_ms) - cut_at) ))
    [ $left -gt 0 ] && sleep "$(awk "BEGIN{print $left/1000}")"
    ip -n "$NS_W1" link set eth0 up
    note "link back after $(( $(now_ms) - cut_at ))ms"
else
    bad "link cut: w1 never ran tasks of the job"
fi
zc wait "$J2" --timeout $((90 * SLOW)) --quiet
check "link cut: the job finished with every task done" test $? = 0
note "took $(( ($(now_ms) - t0) ))ms"
check "link cut: every index exactly once" check_results "$J2" 160
cp "$tmp/results-$J2.jsonl" "$tmp/results-$J2.before"
w1_registered_again() {
    [ "$(count_in_master_log "event=worker_registered worker=w1-host ")" -gt "$reg0" ]
}
wait_until 30 w1_registered_again \
    && ok "link cut: w1 registered again when its link came back" \
    || bad "link cut: w1 registered again when its link came back"
grep "event=worker_registered worker=w1-host " "$tmp/master.log" | tail -n 1 | sed 's/^/      /'
dups_grew() { [ "$(duplicates)" -gt "$dups0" ]; }
# The tasks w1 was running when cut finished there and their results
# waited in its report queue; they must arrive as duplicates, never as a
# second outcome.
wait_until 20 dups_grew \
    && ok "link cut: w1's stale results were recorded as duplicates ($(( $(duplicates) - dups0 )))" \
    || bad "link cut: w1's stale results were recorded as duplicates (none seen)"
check "link cut: still every index exactly once after the stale results" check_results "$J2" 160
check "link cut: the stale results changed no task's record" \
    cmp -s "$tmp/results-$J2.before" "$tmp/results-$J2.jsonl"
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
rm "$tmp/clients/eve.pub"
kill -HUP "$MASTER_PID"
eve_refused() { eve_jobs >/dev/null 2>&1; [ $? = 6 ]; }
wait_until 10 eve_refused \
    && ok "SIGHUP: a key removed from --clients is refused again" \
    || bad "SIGHUP: a key removed from --clients is refused again"

# Without keys the master will not listen beyond loopback.
ip netns exec "$NS_M" "$BIN/ztask-master" --db :memory: --bind "$MASTER_IP" --port 7555 \
    >"$tmp/nokeys.log" 2>&1
rc=$?
refused_bind() { [ $rc -ne 0 ] && grep -q -- --insecure "$tmp/nokeys.log"; }
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
