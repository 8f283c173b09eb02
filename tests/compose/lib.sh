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
