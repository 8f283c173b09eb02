#!/usr/bin/env bash
# ztask on Docker Swarm, tested for real (`make test-swarm`).
#
# On a single-node swarm that this test initialises (and leaves), deploys
# deploy/swarm/docker-stack.yml with `docker stack deploy`, CURVE keys as
# Docker secrets, and checks:
#   1. the master's placement constraint holds it back until its node is
#      labelled; then it starts there, with its volume;
#   2. the keys: secrets in the containers readable by the ztask user only,
#      the master without --insecure, a client without keys and a worker
#      key acting as a client both refused; /metrics served on the overlay
#      network with the http_token secret (401 without);
#   3. `docker service scale` from 2 to 3 workers: 3 register;
#   4. a worker task's container killed (docker kill) mid-job: Swarm starts
#      a replacement, which registers; the master declares the dead worker
#      lost and requeues the N tasks it held (its event=worker_lost line);
#      every task is done exactly once, at least N with attempts > 1;
# then `docker stack rm`, the volume, and `docker swarm leave --force`
# (only for a swarm it created), also when a check fails or the run is
# interrupted. Ends with "N passed, N failed".
#
# SKIP (exit 0) only where it cannot run at all: no docker engine, the
# machine already in a swarm (never touched), or `docker swarm init`
# refused. Everything listens on 127.0.0.1 or inside the stack's overlay
# network (the stack publishes no port).
#
# Environment:
#   ZTASK_TEST_IMAGE  the image tag to build and deploy (default
#                     ztask:compose-test: the one make test-compose builds,
#                     reused when the sources have not changed)
#   KEEP_LOGS=1       keep the logs directory also when everything passed
set -u -o pipefail

cd "$(dirname "$0")/../.." || exit 2

stack="ztaskswarm$$"
logdir="build/swarm-test/$stack"
job_size=600
image="${ZTASK_TEST_IMAGE:-ztask:compose-test}"
. tests/compose/lib.sh

# Every docker command is bounded; --foreground so that an outer
# deadline's SIGTERM reaches the command and the trap's teardown runs
# (tests/compose/run.sh explains).
d() {
    local t=$1
    shift
    timeout --foreground --kill-after=10 "$t" docker "$@"
}

if ! command -v docker >/dev/null 2>&1 || ! d 30 info >/dev/null 2>&1; then
    echo "SKIP: tests/swarm needs a running docker engine (docker info does not answer)"
    exit 0
fi
command -v python3 >/dev/null || { echo "FAIL  python3 is needed to read the CLI's JSON"; exit 1; }

echo "swarm: docker $(d 30 version --format '{{.Server.Version}}'); stack $stack; image $image"

# One run at a time on the machine (a swarm is machine-wide).
lock=/run/lock/ztask-swarm-test.lock
[ -d /run/lock ] && [ -w /run/lock ] || lock=${TMPDIR:-/tmp}/ztask-swarm-test.lock
exec 9>"$lock"
flock -n 9 || { echo "FAIL  another test-swarm holds $lock"; exit 1; }

state=$(d 30 info --format '{{.Swarm.LocalNodeState}}')
if [ "$state" != inactive ]; then
    echo "SKIP: this machine is already part of a swarm (state '$state'): the test makes its own single-node swarm and never touches one it did not create"
    exit 0
fi

mkdir -p "$logdir"

# ------------------------------------------------------------- teardown

created_swarm=0
gwbridge_before=$(d 30 network ls -q --filter name='^docker_gwbridge$')
master_ctr=

save_logs() {
    d 30 service logs --no-task-ids --timestamps "${stack}_master" >"$logdir/master.log" 2>&1
    d 30 service logs --no-task-ids --timestamps "${stack}_worker" >"$logdir/workers.log" 2>&1
}
show_state() {
    d 30 service ps --no-trunc "${stack}_master" "${stack}_worker" 2>&1 | tail -n 12 | sed 's/^/      | /'
    d 30 service logs --tail 20 "${stack}_master" 2>&1 | tail -n 20 | sed 's/^/      | /'
}
teardown() {
    [ $torn_down -eq 1 ] && return 0
    torn_down=1
    {
        d 60 stack rm "$stack"
        # stack rm returns at once; the containers and the network go after.
        local deadline=$(( $(date +%s) + 90 ))
        while [ "$(date +%s)" -lt $deadline ] \
            && [ -n "$(d 30 ps -aq --filter label=com.docker.stack.namespace=$stack)$(d 30 network ls -q --filter label=com.docker.stack.namespace=$stack)" ]; do
            sleep 0.5
        done
        d 60 volume rm -f "${stack}_state"
        if [ $created_swarm -eq 1 ]; then
            d 60 swarm leave --force
            # Left behind by the swarm, not by the stack.
            [ -z "$gwbridge_before" ] && d 30 network rm docker_gwbridge
        fi
        prune_old_images
    } >>"$logdir/teardown.log" 2>&1
    return 0
}

arm_teardown

# The CLI runs in the master's container, with the client key of its
# secrets (as docs/deploy.md shows).
ztask() {
    timeout --foreground --kill-after=5 60 docker exec "$master_ctr" ztask "$@"
}

# task_containers SERVICE: the running containers of a service.
task_containers() {
    d 30 ps -q --filter "label=com.docker.swarm.service.name=${stack}_$1" --filter status=running
}

# service_running SERVICE: how many of its tasks are in state running.
service_running() {
    d 30 service ps --filter desired-state=running --format '{{.CurrentState}}' "${stack}_$1" 2>/dev/null \
        | grep -c '^Running'
}

# wait_until SECONDS COMMAND...: until COMMAND succeeds (a poll of state).
wait_until() {
    local deadline=$(( $(date +%s) + $1 ))
    shift
    while [ "$(date +%s)" -lt $deadline ]; do
        "$@" >/dev/null && return 0
        sleep 0.5
    done
    return 1
}

checker_self_test

# ---------------------------------------------------------------- image

# Builds on what make test-compose left (same Dockerfile, same cache):
# seconds when the sources did not change.
base_image
proxy_build_args
s=$(date +%s)
if d 1200 build --force-rm --network "${ZTASK_BUILD_NETWORK:-default}" "${build_args[@]}" \
        -t "$image" . >"$logdir/build.log" 2>&1; then
    pass "docker build -t $image ($(( $(date +%s) - s ))s)"
else
    tail -n 30 "$logdir/build.log" | sed 's/^/      | /'
    fatal "docker build"
fi
check_image "$image"

# ----------------------------------------------------------------- keys

keys="$PWD/$logdir/keys"
if deploy/make-keys.sh "$keys" "$image" >"$logdir/keys.log" 2>&1 \
    && [ -f "$keys/master.key" ] && [ -f "$keys/worker.key" ] && [ -f "$keys/client.key" ]; then
    pass "deploy/make-keys.sh made the master, worker and client pairs"
else
    fatal "deploy/make-keys.sh: $(tail -n 3 "$logdir/keys.log")"
fi

# ---------------------------------------------------------------- swarm

# Loopback only: the manager's port, gossip and the advertised address.
s=$(date +%s)
if d 60 swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >"$logdir/swarm-init.log" 2>&1; then
    created_swarm=1
    pass "docker swarm init: a single-node swarm on 127.0.0.1 ($(( $(date +%s) - s ))s)"
else
    echo "SKIP: docker swarm init refused here: $(tail -n 1 "$logdir/swarm-init.log")"
    trap - EXIT
    rm -rf "$logdir"
    exit 0
fi
node=$(d 30 info --format '{{.Swarm.NodeID}}')

# -------------------------------------------------------------- deploy

export ZTASK_IMAGE="$image" ZTASK_KEYS="$keys" ZTASK_WORKERS=2
s=$(date +%s)
# --resolve-image never: the image exists only on this node; without it the
# CLI asks a registry for a digest first.
if d 120 stack deploy --resolve-image never -c deploy/swarm/docker-stack.yml "$stack" \
        >"$logdir/deploy.log" 2>&1; then
    pass "docker stack deploy ($(( $(date +%s) - s ))s): $(grep -c '^Creating' "$logdir/deploy.log") objects"
else
    tail -n 10 "$logdir/deploy.log" | sed 's/^/      | /'
    fatal "docker stack deploy"
fi

# 1. No node is labelled yet: the master's task must stay pending.
master_pending() {
    d 30 service ps --no-trunc --format '{{.CurrentState}}|{{.Error}}' "${stack}_master" 2>/dev/null \
        | grep '^Pending.*|.*no suitable node' >/dev/null
}
if wait_until 60 master_pending; then
    pass "the master waits for its node: $(d 30 service ps --no-trunc --format '{{.Error}}' "${stack}_master" | head -n 1)"
else
    fail "the master's task is not pending on its constraint: $(d 30 service ps --no-trunc --format '{{.CurrentState}} {{.Error}}' "${stack}_master" | head -n 2)"
fi
d 30 node update --label-add ztask.master=true "$node" >/dev/null || fatal "docker node update --label-add"

master_healthy() {
    master_ctr=$(task_containers master | head -n 1)
    [ -n "$master_ctr" ] && [ "$(docker inspect -f '{{.State.Health.Status}}' "$master_ctr" 2>/dev/null)" = healthy ]
}
s=$(date +%s)
if wait_until 120 master_healthy; then
    pass "labelled ztask.master=true: the master runs there and is healthy ($(( $(date +%s) - s ))s)"
else
    fatal "the master healthy within 120s of the label"
fi
mounts=$(docker inspect -f '{{range .Mounts}}{{.Type}}:{{.Name}}:{{.Destination}} {{end}}' "$master_ctr")
if grep -q "volume:${stack}_state:/var/lib/ztask " <<<"$mounts "; then
    pass "the master's state is the volume ${stack}_state on its node"
else
    fail "the master's mounts: $mounts"
fi

wait_workers 2 90 >/dev/null && pass "2 workers registered with the master" || fatal "2 workers registered"

# ---------------------------------------------------------- 2: the keys

# Secrets are files of the ztask user (uid 10001), mode 0400.
modes=$(docker exec "$master_ctr" stat -c '%n %a %u' /run/secrets/master.key /run/secrets/client.key 2>&1 | tr '\n' ' ')
if [ "$modes" = "/run/secrets/master.key 400 10001 /run/secrets/client.key 400 10001 " ]; then
    pass "the master's secrets: $modes"
else
    fail "the master's secrets: $modes"
fi
worker_ctr=$(task_containers worker | head -n 1)
modes=$(docker exec "$worker_ctr" sh -c 'stat -c "%n %a %u" /run/secrets/*' 2>&1 | tr '\n' ' ')
if [ "$modes" = "/run/secrets/worker.key 400 10001 " ]; then
    pass "a worker's secrets: only its own key ($modes)"
else
    fail "a worker's secrets: $modes"
fi
d 30 logs "$master_ctr" >"$logdir/master-start.log" 2>&1
if grep -q 'event=listening' "$logdir/master-start.log" && ! grep -q 'event=insecure' "$logdir/master-start.log" \
    && docker inspect -f '{{join .Args " "}}' "$master_ctr" | grep -- '--curve-secret /run/secrets/master.key' >/dev/null; then
    pass "the master listens with CURVE (--curve-secret, no event=insecure)"
else
    fail "the master's start: $(grep -m 2 'event=listening\|event=insecure' "$logdir/master-start.log")"
fi
# From a worker's container, on the overlay network: no keys at all, then
# the workers' own key used as a client.
check_refused "$worker_ctr" /run/secrets/worker.key /etc/ztask/master.pub

# The master's --http, as in the compose file: /metrics on the overlay
# network behind the http_token secret. The image has no HTTP client, so
# bash's /dev/tcp speaks it from a worker's container.
http_get() {   # CONTAINER PATH [TOKEN]: the answer's status line, headers and body
    timeout --foreground --kill-after=5 30 docker exec -e TOKEN="${3:-}" "$1" bash -c '
        exec 3<>/dev/tcp/master/8080 || exit 1
        auth=""
        [ -n "$TOKEN" ] && auth="Authorization: Bearer $TOKEN"$'"'"'\r\n'"'"'
        printf "GET %s HTTP/1.1\r\nHost: master\r\nConnection: close\r\n%s\r\n" "$0" "$auth" >&3
        cat <&3' "$2"
}
token=$(head -n 1 "$keys/http.token")
out=$(http_get "$worker_ctr" /metrics "$token" 2>&1)
if grep -q '^HTTP/1.1 200' <<<"$out" && grep -q '^ztask_build_info{' <<<"$out" \
    && grep -q '^ztask_workers{state="alive"} 2' <<<"$out"; then
    pass "the master serves /metrics on the overlay network with the http_token secret ($(grep -c '^ztask_' <<<"$out") ztask samples)"
else
    fail "/metrics with the token from a worker's container: $(head -c 300 <<<"$out" | tr '\r\n' '  ')"
fi
out=$(http_get "$worker_ctr" /metrics 2>&1)
if grep -q '^HTTP/1.1 401' <<<"$out"; then
    pass "/metrics without the token: 401"
else
    fail "/metrics without the token: $(head -n 1 <<<"$out")"
fi
mode=$(docker exec "$master_ctr" stat -c '%n %a %u' /run/secrets/http.token 2>&1)
if [ "$mode" = "/run/secrets/http.token 400 10001" ]; then
    pass "the http token is a secret of the ztask user, mode 0400"
else
    fail "the http token: $mode"
fi

# ------------------------------------------------------------ 3: scale

s=$(date +%s)
d 60 service scale --detach "${stack}_worker=3" >>"$logdir/scale.log" 2>&1
three_running() { [ "$(service_running worker)" -eq 3 ]; }
if wait_workers 3 90 >/dev/null && wait_until 60 three_running; then
    pass "docker service scale worker=3: 3 tasks running, 3 workers registered ($(( $(date +%s) - s ))s)"
else
    fatal "scale to 3 workers: $(service_running worker) tasks running, $(alive_workers | wc -l) workers alive"
fi

# ------------------------------------------- 4: a worker's container killed

# Tasks long enough that the job spans several seconds and every worker
# holds tasks when we strike.
js=$(date +%s)
job=$(submit_bg --array 1-$job_size -- sh -c 'sleep 0.1; echo {}' 2>>"$logdir/job.err")
[ -n "$job" ] || fatal "submit: $(tail -n 2 "$logdir/job.err")"
victim_name= victim_ctr=
if st=$(wait_running "$job" 60 90); then
    # The worker to kill: one the master says is running tasks now.
    ztask workers --json >"$logdir/workers-before.jsonl" 2>/dev/null
    victim_name=$(json_eval "$logdir/workers-before.jsonl" \
        'next((w["worker"] for w in r if w.get("alive") and w.get("running", 0) > 0), "")')
    victim_host=$(json_eval "$logdir/workers-before.jsonl" \
        'next((w["host"] for w in r if w["worker"] == "'"$victim_name"'"), "")')
    for id in $(task_containers worker); do
        [ "$(docker inspect -f '{{.Config.Hostname}}' "$id")" = "$victim_host" ] && victim_ctr=$id
    done
    if [ -n "$victim_ctr" ] && d 30 kill "$victim_ctr" >/dev/null; then
        pass "killed worker $victim_name's container mid-job ($(json_eval /dev/stdin 'r[0]["done"]' <<<"$st") of $job_size done; it was running $(json_eval "$logdir/workers-before.jsonl" 'next(w["running"] for w in r if w["worker"] == "'"$victim_name"'")'))"
    else
        fail "no worker container with running tasks to kill (worker '$victim_name')"
        victim_ctr=
    fi
else
    fail "job: $st"
fi

requeued=0
if [ -n "$victim_ctr" ]; then
    # Swarm: the killed task fails and a new one runs in its place.
    replaced() {
        local ids
        ids=$(task_containers worker)
        [ "$(wc -l <<<"$ids")" -eq 3 ] && ! grep -q "^${victim_ctr:0:12}" <<<"$ids" \
            && [ "$(service_running worker)" -eq 3 ]
    }
    s=$(date +%s)
    if wait_until 60 replaced; then
        pass "Swarm replaced the killed task: 3 running again ($(( $(date +%s) - s ))s; the old one: $(d 30 service ps --filter desired-state=shutdown --format '{{.CurrentState}} {{.Error}}' "${stack}_worker" | head -n 1))"
    else
        fail "Swarm did not replace the killed worker within 60s: $(d 30 service ps --format '{{.Name}} {{.CurrentState}} {{.Error}}' "${stack}_worker" | tr '\n' ';')"
    fi
    # ztask: the master declares the dead worker lost (its log line says
    # how many tasks it requeued) and the replacement registers.
    # (The name may come quoted: peer-chosen strings are, in some lines.)
    lost_line() {
        docker logs "$master_ctr" 2>&1 | grep -m 1 -E "event=worker_lost worker=\"?$victim_name\"? "
    }
    if wait_until 60 lost_line; then
        requeued=$(lost_line | sed -n 's/.* requeued=\([0-9]*\).*/\1/p')
        if [ "${requeued:-0}" -ge 1 ]; then
            pass "the master declared $victim_name lost and requeued the $requeued tasks it held: $(lost_line | grep -o 'event=.*')"
        else
            fail "the master declared $victim_name lost but requeued nothing: $(lost_line)"
        fi
    else
        fail "no event=worker_lost for $victim_name in the master's log within 60s"
    fi
    relisted() {
        local alive
        alive=$(alive_workers)
        [ "$(wc -l <<<"$alive")" -ge 3 ] && ! grep -qx "$victim_name" <<<"$alive"
    }
    if wait_until 60 relisted; then
        pass "3 workers alive again, the replacement among them, $victim_name not"
    else
        fail "workers after the kill: $(ztask workers --json 2>&1 | tr '\n' ' ' | cut -c1-400)"
    fi
fi

wait_job "$job" "the job completes after the kill" "$js"
# Every task done exactly once, and every task the dead worker held ran
# again: at least that many with attempts > 1.
check_job "$job" "results after a worker kill" --min-retried "$(( requeued > 0 ? requeued : 1 ))"

# -------------------------------------------------------------- teardown

save_logs
s=$(date +%s)
teardown
left=$(d 30 ps -aq --filter "label=com.docker.stack.namespace=$stack"
       d 30 network ls -q --filter "label=com.docker.stack.namespace=$stack"
       d 30 volume ls -q --filter "name=${stack}_")
swarm_state=$(d 30 info --format '{{.Swarm.LocalNodeState}}')
if [ -z "$left" ] && [ "$swarm_state" = inactive ]; then
    pass "stack rm, volume rm, swarm leave: nothing left, swarm inactive ($(( $(date +%s) - s ))s)"
else
    fail "left behind: $(echo $left); swarm $swarm_state"
fi

summary
[ "$failed" -eq 0 ]
