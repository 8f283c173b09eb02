# Helpers shared by the container tests, sourced (bash) by
# tests/compose/run.sh and tests/swarm/run.sh.
#
# The sourcing script sets, before calling them:
#   logdir     where outputs go
#   job_size   tasks per array job (check_job checks indexes 1..job_size)
# and defines ztask (the CLI, run somewhere that reaches the master).
# Every wait is bounded by its SECONDS argument; polls are on the state the
# master reports (`ztask status`, `ztask workers --json`).

passed=0 failed=0
t0=$(date +%s)
pass() { passed=$((passed + 1)); printf 'PASS  %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$*"; }
note() { printf '      %s\n' "$*"; }
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }

summary() {
    echo
    echo "total time $(elapsed); logs in $logdir"
    echo "$passed passed, $failed failed"
}

checker=tests/compose/check_results.py

# Teardown on every way out. The sourcing script defines
#   save_logs   copies the cluster's logs into $logdir
#   teardown    removes what the test made (it sets torn_down=1 first)
#   show_state  a few lines on the cluster, for a fatal failure
# and calls arm_teardown once there is something to tear down. The logs
# directory goes when everything passed (unless KEEP_LOGS=1).
torn_down=0
on_exit() {
    local rc=$?
    if [ $torn_down -eq 0 ]; then
        save_logs
        teardown
    fi
    if [ "$failed" -eq 0 ] && [ "$rc" -eq 0 ] && [ "${KEEP_LOGS:-0}" != 1 ]; then
        rm -rf "$logdir"
        rmdir "$(dirname "$logdir")" 2>/dev/null
    fi
}
arm_teardown() {
    trap on_exit EXIT
    trap 'fail "interrupted (tearing down)"; summary; exit 130' INT TERM HUP
}

# fatal MESSAGE: a check that later ones cannot do without failed.
fatal() {
    fail "$*"
    echo "stopping: the remaining checks need this one"
    show_state
    summary
    exit 1
}

# proxy_build_args: fills the array build_args with the proxy a host uses
# for apt, as build arguments (docker keeps none of them in the image);
# nothing is hard-coded.
proxy_build_args() {
    build_args=()
    local v apt_proxy
    for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        [ -n "${!v:-}" ] && build_args+=(--build-arg "$v=${!v}")
    done
    if [ -z "${http_proxy:-}${HTTP_PROXY:-}" ] && command -v apt-config >/dev/null; then
        apt_proxy=$(apt-config dump --format '%v%n' Acquire::http::Proxy 2>/dev/null | head -n 1)
        case "$apt_proxy" in http://*|https://*) build_args+=(--build-arg "http_proxy=$apt_proxy") ;; esac
    fi
    return 0
}

# base_image: debian:bookworm-slim, built from Debian's packages unless it
# is there (scripts/docker-base-image.sh); fatal when it cannot be had.
base_image() {
    local s
    s=$(date +%s)
    if timeout --foreground 1200 scripts/docker-base-image.sh >"$logdir/base-image.log" 2>&1; then
        pass "base image debian:bookworm-slim ($(tail -n 1 "$logdir/base-image.log"); $(( $(date +%s) - s ))s)"
    else
        tail -n 20 "$logdir/base-image.log" | sed 's/^/      | /'
        fatal "base image debian:bookworm-slim could not be built"
    fi
}

# prune_old_images: the images a rebuild untagged go, so repeated runs do
# not fill the disk. Of the build stage's untagged images the newest stays:
# it holds the layer cache.
prune_old_images() {
    timeout --foreground 60 docker image prune -f --filter label=org.opencontainers.image.title=ztask
    local old
    old=$(docker images -q --filter dangling=true \
              --filter label=org.opencontainers.image.title=ztask-build | tail -n +2)
    [ -n "$old" ] && timeout --foreground 60 docker rmi $old
    return 0
}

# check_image IMAGE: the runtime image holds the three programs, the
# plugin and the keys script, runs as a non-root user, has no compiler.
check_image() {
    local img
    img=$(timeout --foreground 60 docker run --rm --entrypoint sh "$1" -c '
        printf "uid=%s " "$(id -u)"
        for p in ztask-master ztask-worker ztask ztask-docker-keys; do
            command -v $p >/dev/null && printf "%s " $p
        done
        command -v cc >/dev/null && printf "cc "
        dpkg-query -W -f "\${Package}\n" 2>/dev/null | grep -q -- "-dev\$" && printf "dev-packages "
        test -f /usr/local/lib/ztask/libmytasks.so && printf "plugin "
        pwd' 2>&1)
    if [ "$img" = "uid=10001 ztask-master ztask-worker ztask ztask-docker-keys plugin /var/lib/ztask" ]; then
        pass "image: non-root, three programs, the keys script and the plugin, no compiler, no -dev package ($(docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1/1e6}'))"
    else
        fail "image contents: got '$img'"
    fi
}

# check_refused CONTAINER WORKER_KEY MASTER_PUB: from CONTAINER (on the
# cluster's network), a client without keys, then the workers' key used as
# a client: the master refuses both (exit 6, authentication).
check_refused() {
    local out rc
    out=$(timeout --foreground 60 docker exec "$1" env -u ZTASK_CURVE_SECRET -u ZTASK_MASTER_KEY \
          ztask --master master:5555 --request-timeout 10 stats 2>&1)
    rc=$?
    if [ $rc -eq 6 ]; then
        pass "a client without keys is refused (exit 6: $(head -n 1 <<<"$out" | cut -c1-100))"
    else
        fail "a client without keys: exit $rc: $out"
    fi
    out=$(timeout --foreground 60 docker exec "$1" ztask --master master:5555 --request-timeout 10 \
          --curve-secret "$2" --master-key "$3" stats 2>&1)
    rc=$?
    if [ $rc -eq 6 ] && grep -q 'not allowed to act as a client' <<<"$out"; then
        pass "the workers' key acting as a client is refused (exit 6)"
    else
        fail "the workers' key as a client: exit $rc: $out"
    fi
}

# json_eval FILE EXPR: evaluates a Python expression over the list of JSON
# objects in FILE (one per line), bound to `r`.
json_eval() {
    python3 -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(eval(sys.argv[2]))' "$1" "$2"
}

# job_field JOB FIELD: one counter of `ztask status JOB --json`, or "".
job_field() {
    ztask status "$1" --json 2>/dev/null | python3 -c '
import json, sys
for l in sys.stdin:
    if l.strip():
        print(json.loads(l).get(sys.argv[1], "")); break' "$2"
}

# alive_workers: the names of the workers the master lists alive, one a line.
alive_workers() {
    ztask workers --json 2>/dev/null | python3 -c '
import json, sys
for l in sys.stdin:
    if l.strip():
        w = json.loads(l)
        if w.get("alive"):
            print(w["worker"])' 2>/dev/null
}

# wait_workers N SECONDS: until at least N workers are alive.
wait_workers() {
    local deadline=$(( $(date +%s) + $2 )) n=0
    while [ "$(date +%s)" -lt $deadline ]; do
        n=$(alive_workers | wc -l)
        [ "$n" -ge "$1" ] && return 0
        sleep 0.5
    done
    echo "alive workers: $n"
    return 1
}

# wait_running JOB MIN_DONE SECONDS: until JOB has tasks running and at
# least MIN_DONE done, i.e. it is well and truly mid-job.
wait_running() {
    local deadline=$(( $(date +%s) + $3 )) rec
    while [ "$(date +%s)" -lt $deadline ]; do
        rec=$(ztask status "$1" --json 2>/dev/null)
        if python3 -c '
import json, sys
j = json.loads(sys.argv[1])
sys.exit(0 if j["running"] > 0 and j["done"] >= int(sys.argv[2]) and j["done"] < j["total"] else 1)
' "$rec" "$2" 2>/dev/null; then
            echo "$rec"
            return 0
        fi
        sleep 0.2
    done
    echo "not mid-job in time: $rec"
    return 1
}

# submit_bg ARGS...: submits without waiting; prints the job id.
submit_bg() {
    local out
    out=$(ztask submit --json "$@") || return 1
    python3 -c 'import json, sys; print(json.loads(sys.argv[1].splitlines()[0])["job"])' "$out"
}

# wait_job JOB WHAT SINCE: until JOB has ended (at most 180 s); passes
# "WHAT (Ns from submit)" when every task succeeded (SINCE: the submit's time).
wait_job() {
    if ztask wait "$1" --timeout 180 --quiet; then
        pass "$2 ($(( $(date +%s) - $3 ))s from submit)"
    else
        fail "$2: wait exit $?: $(ztask status "$1" --json 2>&1)"
    fi
}

# check_job JOB WHAT [CHECKER OPTIONS]: fetches every result of JOB and
# checks them (check_results.py's options: --min-retried, --unchanged).
check_job() {
    local job=$1 what=$2 out rc
    shift 2
    if ! ztask results "$job" --json >"$logdir/results-$job.jsonl" 2>"$logdir/results-$job.err"; then
        fail "$what: ztask results $job failed: $(tail -n 1 "$logdir/results-$job.err")"
        return 1
    fi
    out=$(python3 $checker "$logdir/results-$job.jsonl" "$job" 1 "$job_size" --stdout-is-index "$@")
    rc=$?
    if [ $rc -eq 0 ]; then
        pass "$what: $out"
    else
        fail "$what:"
        echo "$out" | sed 's/^/      /'
    fi
    return $rc
}

# checker_self_test: the result checker must be able to fail before its
# passes mean anything.
checker_self_test() {
    local out
    if out=$(python3 $checker --self-test); then
        pass "check_results.py self-test: $out"
    else
        fail "check_results.py self-test:"
        echo "$out" | sed 's/^/      /'
    fi
}
