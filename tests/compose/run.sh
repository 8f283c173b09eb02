#!/usr/bin/env bash
# The docker compose cluster, tested for real (`make test-compose`).
#
# Builds debian:bookworm-slim locally when it is missing (no registry
# needed), builds the ztask image through docker-compose.yml, brings up a
# master and 3 workers under a project name of its own, and checks:
#   0. the image (non-root, no compiler), health checks of master and
#      workers, and the README's `exec master ztask` / `run --rm cli` forms;
#      CURVE keys made at the master's first start: the master without
#      --insecure, each container holding only its keys, a client without
#      keys and a worker key acting as a client refused;
#   1. a 2,000-task job submitted by the CLI in a container completes, every
#      index exactly once, all done, stdout right;
#   2. a worker killed (docker kill) while it runs tasks loses nothing, and
#      the tasks it held run again elsewhere;
#   3. the master restarted (compose restart) mid-job loses nothing the
#      submit acknowledged, and every result recorded before the restart
#      is still there unchanged;
#   4. the master SIGKILLed mid-job and restarted by its restart policy:
#      the same;
#   5. `down` without -v then `up` keeps jobs, results and keys (volumes);
#   and the prometheus service has ztask's series for job 1 (scraped from
#   the master's --http with the cluster's token);
# then tears everything down (containers, network, volume), also when a
# check fails or the run is interrupted. Ends with "N passed, N failed".
#
# Environment:
#   ZTASK_COMPOSE   the compose command (default: `docker compose` when it
#                   works, else `docker-compose`)
#   ZTASK_TEST_IMAGE  the image tag to build (default ztask:compose-test, so
#                   a user's ztask:local is left alone)
#   KEEP_LOGS=1     keep the logs directory also when everything passed
# Every wait is bounded; the longest is the first build (see docs/docker.md).
set -u -o pipefail

cd "$(dirname "$0")/../.." || exit 2
here=tests/compose

# ------------------------------------------------------------------ setup

project="ztasktest$$r$RANDOM"
logdir="build/compose-test/$project"
job_size=2000
mkdir -p "$logdir"
. $here/lib.sh
export ZTASK_IMAGE="${ZTASK_TEST_IMAGE:-ztask:compose-test}"
# Publish the master's API on a free port of 127.0.0.1 (never a fixed one:
# another cluster or test may hold 5555).
export ZTASK_PORT=
# The same for the dashboard and Prometheus's UI.
export ZTASK_HTTP_PORT= ZTASK_PROM_PORT=
export ZTASK_PROM_IMAGE="${ZTASK_TEST_PROM_IMAGE:-ztask-prometheus:compose-test}"
unset ZTASK_MASTER

if [ -n "${ZTASK_COMPOSE:-}" ]; then
    read -r -a dc_cmd <<<"$ZTASK_COMPOSE"
elif docker compose version >/dev/null 2>&1; then
    dc_cmd=(docker compose)
else
    dc_cmd=(docker-compose)
fi

# A proxy the host uses for apt goes to the build (lib.sh).
proxy_build_args
build_opts=("${build_args[@]}")
# docker-compose v1 drives the classic builder, which leaves the container
# of a failed step behind unless told otherwise.
dc_version=$("${dc_cmd[@]}" version --short 2>/dev/null)
case "$dc_version" in 1.*) build_opts+=(--force-rm) ;; esac

# Every external command is bounded with `timeout --foreground`: without
# --foreground, timeout moves its command to a process group of its own, so
# the SIGTERM of an outer deadline (CI's `timeout` signals our whole group)
# would not reach a running build, bash would wait for it before running
# the trap, and the outer SIGKILL would come before the teardown.

# dc SECONDS ARGS...: compose for this project, bounded.
dc() {
    local t=$1
    shift
    timeout --foreground --kill-after=10 "$t" "${dc_cmd[@]}" -p "$project" -f docker-compose.yml "$@"
}

save_logs() {
    dc 30 logs --no-color --timestamps >"$logdir/cluster.log" 2>&1
}
show_state() {
    dc 30 logs --no-color --timestamps --tail 20 2>&1 | tail -n 60 | sed 's/^/      | /'
}
teardown() {
    [ $torn_down -eq 1 ] && return 0
    torn_down=1
    [ -n "${cli_ctr:-}" ] && docker rm -f "$cli_ctr" >/dev/null 2>&1
    dc 120 down -v --remove-orphans -t 10 >>"$logdir/down.log" 2>&1
    # The image stays (the next run builds on it), older ones go.
    prune_old_images >>"$logdir/down.log" 2>&1
    return 0
}
arm_teardown

# CLI calls go through one long-lived container on the compose network (a
# one-off "cli" service container running sleep), so polling costs a
# `docker exec`, not a container start, and works while the master restarts.
cli_ctr=
ztask() {
    timeout --foreground --kill-after=5 60 docker exec "$cli_ctr" ztask "$@"
}

# wait_health SECONDS: until the master's container reports healthy.
wait_health() {
    local deadline=$(( $(date +%s) + $1 )) id status
    while [ "$(date +%s)" -lt $deadline ]; do
        id=$(dc 30 ps -q master 2>/dev/null | head -n 1)
        status=$([ -n "$id" ] && docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null)
        [ "$status" = healthy ] && return 0
        sleep 1
    done
    echo "master health: ${status:-no container}"
    return 1
}

echo "compose: ${dc_cmd[*]} (${dc_version:-?}); project $project; image $ZTASK_IMAGE"

# One run at a time on the machine, whichever checkout it runs from: the
# stale-project sweep below would otherwise take down another run's cluster.
lock=/run/lock/ztask-compose-test.lock
[ -d /run/lock ] && [ -w /run/lock ] || lock=${TMPDIR:-/tmp}/ztask-compose-test.lock
exec 9>"$lock"
flock -n 9 || fatal "another test-compose holds $lock"

# A run killed outright (SIGKILL: no trap) leaves its project behind:
# containers, network and volume labelled with a ztasktest* project name.
stale=$( { docker ps -a --format '{{.Label "com.docker.compose.project"}}'
           docker network ls --format '{{.Label "com.docker.compose.project"}}'
           docker volume ls --format '{{.Label "com.docker.compose.project"}}'; } 2>/dev/null \
         | grep '^ztasktest' | sort -u)
for p in $stale; do
    note "removing what an earlier run left behind: project $p"
    ids=$(docker ps -aq --filter "label=com.docker.compose.project=$p")
    [ -n "$ids" ] && timeout --foreground 60 docker rm -f $ids >/dev/null 2>&1
    ids=$(docker network ls -q --filter "label=com.docker.compose.project=$p")
    [ -n "$ids" ] && timeout --foreground 60 docker network rm $ids >/dev/null 2>&1
    ids=$(docker volume ls -q --filter "label=com.docker.compose.project=$p")
    [ -n "$ids" ] && timeout --foreground 60 docker volume rm -f $ids >/dev/null 2>&1
done

checker_self_test

command -v python3 >/dev/null || fatal "python3 is needed to read the CLI's JSON"
timeout --foreground 30 docker info >/dev/null 2>&1 || fatal "the docker engine does not answer (docker info)"

# ---------------------------------------------------------------- build

base_image

s=$(date +%s)
if dc 1200 build "${build_opts[@]}" >"$logdir/build.log" 2>&1; then
    pass "docker compose build ($(( $(date +%s) - s ))s)"
else
    tail -n 30 "$logdir/build.log" | sed 's/^/      | /'
    fatal "docker compose build"
fi

check_image "$ZTASK_IMAGE"

# ------------------------------------------------------------------- up

s=$(date +%s)
if dc 300 up -d --scale worker=3 >"$logdir/up.log" 2>&1; then
    pass "up -d --scale worker=3 ($(( $(date +%s) - s ))s)"
else
    tail -n 20 "$logdir/up.log" | sed 's/^/      | /'
    fatal "up -d --scale worker=3"
fi

wait_health 90 && pass "master healthy" || fatal "master healthy within 90s"

# A one-off container of the cli service that stays up; `run -d` prints its name.
cli_ctr=$(dc 120 run -d --no-deps --entrypoint sleep cli 3600 2>>"$logdir/up.log" | tail -n 1)
[ -n "$cli_ctr" ] && docker exec "$cli_ctr" true 2>/dev/null \
    || fatal "a cli container (run -d cli): $(tail -n 3 "$logdir/up.log")"

wait_workers 3 60 && pass "3 workers registered with the master" || fatal "3 workers registered"

# wait_workers_healthy N SECONDS: until N worker containers report healthy
# (their check asks the master whether it lists them alive).
wait_workers_healthy() {
    local deadline=$(( $(date +%s) + $2 )) n=0 id
    while [ "$(date +%s)" -lt $deadline ]; do
        n=0
        for id in $(dc 30 ps -q worker 2>/dev/null); do
            [ "$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null)" = healthy ] && n=$((n + 1))
        done
        [ $n -ge "$1" ] && return 0
        sleep 1
    done
    echo "healthy workers: $n"
    return 1
}
if out=$(wait_workers_healthy 3 60); then
    pass "3 worker containers healthy"
else
    fail "worker health checks: $out"
fi

# Workers are named after their containers (ztask-docker-name), each
# replica once: PROJECT-worker-N (compose v2) or PROJECT_worker_N (v1).
if out=$(dc 60 exec -T master ztask workers --json 2>&1) \
    && names=$(json_eval /dev/stdin \
        '" ".join(sorted(w["worker"] for w in r if w["alive"]))' <<<"$out") \
    && [ "$(tr ' ' '\n' <<<"$names" | grep -cE "^${project}[-_]worker[-_][1-3]\$")" -eq 3 ]; then
    pass "workers named after their containers: $names"
else
    fail "worker names: want ${project}-worker-1..3, got: ${names:-$out}"
fi

# The README's and docs/docker.md's ways in, as written there (-T: no
# terminal here): exec in the master's container, and the cli service.
if out=$(dc 60 exec -T master ztask stats 2>&1) && grep -q "workers alive *3" <<<"$out"; then
    pass "exec master ztask stats: $(grep "workers alive" <<<"$out" | tr -s ' ')"
else
    fail "exec master ztask stats: $(tail -n 2 <<<"$out")"
fi
if out=$(dc 120 run --rm -T cli workers 2>&1) && [ "$(grep -c ' alive ' <<<"$out")" -eq 3 ]; then
    pass "run --rm cli workers lists 3 alive workers"
else
    fail "run --rm cli workers: $(tail -n 4 <<<"$out")"
fi

host_port=$(dc 30 port master 5555 2>/dev/null | tail -n 1)
case "$host_port" in
    127.0.0.1:*) pass "API published on the host's loopback only ($host_port)" ;;
    *) fail "API published as '$host_port', want 127.0.0.1:PORT" ;;
esac

# ------------------------------------------------------------ the keys

# Made by the master's first start (ztask-docker-keys); the master uses
# them instead of --insecure.
mid=$(dc 30 ps -q master | head -n 1)
wid=$(dc 30 ps -q worker | head -n 1)
docker logs "$mid" >"$logdir/master-start.log" 2>&1
if grep -q 'ztask-docker-keys: made /var/lib/ztask/keys/master.key' "$logdir/master-start.log" \
    && grep -q 'event=listening' "$logdir/master-start.log" \
    && ! grep -q 'event=insecure' "$logdir/master-start.log" \
    && docker inspect -f '{{join .Args " "}}' "$mid" | grep -- '--curve-secret /var/lib/ztask/keys/master.key' >/dev/null; then
    pass "the master made its keys at first start and listens with CURVE (no --insecure)"
else
    fail "the master's start: $(grep -m 3 'ztask-docker-keys\|event=listening\|event=insecure' "$logdir/master-start.log")"
fi
# Each container holds its own secret key, mode 0600, the ztask user's; a
# worker never sees the master's.
keys_of() {
    docker exec "$1" sh -c 'for f in /var/lib/ztask/keys/*.key /etc/ztask/*/*.key; do
        [ -e "$f" ] && stat -c "%n %a %u" "$f"; done' 2>&1 | tr '\n' ' '
}
got="master: $(keys_of "$mid")| worker: $(keys_of "$wid")| cli: $(keys_of "$cli_ctr")"
want="master: /var/lib/ztask/keys/master.key 600 10001 /etc/ztask/client/client.key 600 10001 /etc/ztask/worker/worker.key 600 10001 | worker: /etc/ztask/client/client.key 600 10001 /etc/ztask/worker/worker.key 600 10001 | cli: /etc/ztask/client/client.key 600 10001 "
if [ "$got" = "$want" ]; then
    pass "secret keys where they belong, 0600, uid 10001 ($got)"
else
    fail "secret keys: got '$got', want '$want'"
fi
master_pub=$(docker exec "$mid" cat /var/lib/ztask/keys/master.pub 2>/dev/null)
# A container on the project's network without keys, then the workers' key
# used as a client.
check_refused "$wid" /etc/ztask/worker/worker.key /etc/ztask/worker/master.pub

# ---------------------------------------------------------- 1: 2,000 tasks

# Through the cli service, the way docs/docker.md shows it.
s=$(date +%s)
dc 300 run --rm --no-deps -T cli submit --array 1-2000 --wait --json -- sh -c 'echo {}' \
    >"$logdir/job1.jsonl" 2>"$logdir/job1.err"
rc=$?
job1=$(head -n 1 "$logdir/job1.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job"])' 2>/dev/null)
if [ $rc -eq 0 ] && [ -n "$job1" ]; then
    pass "job 1: submit --array 1-2000 --wait exits 0 ($(( $(date +%s) - s ))s)"
else
    fail "job 1: submit --wait exit $rc, job '${job1}': $(tail -n 2 "$logdir/job1.err")"
fi
if [ -n "$job1" ]; then
    out=$(python3 $here/check_results.py "$logdir/job1.jsonl" "$job1" 1 2000 --stdout-is-index)
    [ $? -eq 0 ] && pass "job 1: submit --wait --json printed $out" || { fail "job 1: submit --wait --json output:"; echo "$out" | sed 's/^/      /'; }
    check_job "$job1" "job 1: results"
fi

# ------------------------------------- Prometheus has ztask's series for job 1

# The prometheus service scrapes the master's /metrics (--http, with the
# token ztask-docker-keys made) every 5 s; its own promtool asks it.
prom_query() {
    local id
    id=$(dc 30 ps -q prometheus 2>/dev/null | head -n 1)
    [ -n "$id" ] && timeout --foreground 30 docker exec "$id" \
        promtool query instant http://localhost:9090 "$1" 2>&1
}
deadline=$(( $(date +%s) + 90 ))
out=
while [ "$(date +%s)" -lt $deadline ]; do
    out=$(prom_query 'ztask_tasks_finished_total{job="ztask",outcome="done"}')
    grep -Eq '=> (2[0-9]{3}|[3-9][0-9]{3}|[0-9]{5,}) ' <<<"$out" && break
    sleep 2
done
if grep -Eq '=> (2[0-9]{3}|[3-9][0-9]{3}|[0-9]{5,}) ' <<<"$out"; then
    pass "Prometheus scraped the master: $(tr -s ' ' <<<"$out" | cut -c1-140)"
else
    fail "Prometheus has no ztask_tasks_finished_total >= 2000 for job 1 after 90s: $(tail -n 3 <<<"$out")"
fi
out=$(prom_query 'ztask_workers{state="alive"}')
if grep -q '=> 3 ' <<<"$out"; then
    pass "Prometheus: ztask_workers{state=\"alive\"} = 3"
else
    fail "Prometheus: ztask_workers alive: $(tail -n 3 <<<"$out")"
fi
# A token is required there (a non-loopback --http without one is refused).
mid=$(dc 30 ps -q master | head -n 1)
if docker logs "$mid" 2>&1 | grep 'event=http_listening url=http://0.0.0.0:8080/ tokens=1' >/dev/null; then
    pass "the master serves --http inside the network with one token"
else
    fail "the master's http_listening line: $(docker logs "$mid" 2>&1 | grep -m1 http_listening)"
fi

# ------------------------------------------------ 2: a worker killed mid-job

# Long enough tasks that the job spans several seconds and every worker
# has tasks in hand when we strike.
js=$(date +%s)
job2=$(submit_bg --array 1-2000 -- sh -c 'sleep 0.02; echo {}' 2>>"$logdir/job2.err")
if [ -z "$job2" ]; then
    fail "job 2: submit: $(tail -n 2 "$logdir/job2.err")"
else
    if st=$(wait_running "$job2" 100 90); then
        # The worker to kill: one the master says is running tasks now.
        ztask workers --json >"$logdir/workers-before-kill.jsonl" 2>/dev/null
        victim_host=$(json_eval "$logdir/workers-before-kill.jsonl" \
            'next((w["host"] for w in r if w.get("alive") and w.get("running", 0) > 0), "")')
        victim=
        for id in $(dc 30 ps -q worker); do
            [ "$(docker inspect -f '{{.Config.Hostname}}' "$id")" = "$victim_host" ] && victim=$id
        done
        if [ -n "$victim" ]; then
            docker kill "$victim" >/dev/null
            pass "job 2: killed worker $victim_host mid-job (it had tasks running; job: $(json_eval /dev/stdin 'r[0]["done"]' <<<"$st") done)"
        else
            fail "job 2: no worker container with running tasks to kill (host '$victim_host')"
        fi
    else
        fail "job 2: $st"
    fi
    wait_job "$job2" "job 2: completes after the kill" "$js"
    # The victim held tasks: they must have run again elsewhere.
    check_job "$job2" "job 2: results after a worker kill" --min-retried 1
fi

# --------------------------------------------- 3: the master restarted mid-job

js=$(date +%s)
job3=$(submit_bg --array 1-2000 -- sh -c 'sleep 0.02; echo {}' 2>>"$logdir/job3.err")
if [ -z "$job3" ]; then
    fail "job 3: submit: $(tail -n 2 "$logdir/job3.err")"
else
    # The submit returned a job id: those 2,000 tasks are acknowledged.
    if st=$(wait_running "$job3" 100 90); then
        before=$(json_eval /dev/stdin 'r[0]["done"]' <<<"$st")
        # What the master has recorded so far: it must survive unchanged.
        ztask results "$job3" --json >"$logdir/before-$job3.jsonl" 2>>"$logdir/job3.err"
        s=$(date +%s)
        if dc 120 restart master >>"$logdir/restart.log" 2>&1; then
            pass "job 3: restarted the master with $before of 2000 done ($(( $(date +%s) - s ))s)"
        else
            fail "job 3: compose restart master: $(tail -n 2 "$logdir/restart.log")"
        fi
    else
        fail "job 3: $st"
    fi
    wait_health 90 || fail "job 3: master healthy again after the restart"
    wait_job "$job3" "job 3: completes after the master restart" "$js"
    check_job "$job3" "job 3: results after a master restart" --unchanged "$logdir/before-$job3.jsonl"
fi

# ----------------------- 4: the master killed (SIGKILL) mid-job, brought back

# A crash, not a stop: the master process gets SIGKILL inside its container,
# so nothing is flushed on the way out, and the container's restart policy
# (not the test) starts it again. With the default --sync acked every
# acknowledged submit and every recorded result is written before the reply
# or the ack (fsynced before any answer): a killed master loses none of them.
js=$(date +%s)
job4=$(submit_bg --array 1-2000 -- sh -c 'sleep 0.02; echo {}' 2>>"$logdir/job4.err")
if [ -z "$job4" ]; then
    fail "job 4: submit: $(tail -n 2 "$logdir/job4.err")"
else
    if st=$(wait_running "$job4" 100 90); then
        before=$(json_eval /dev/stdin 'r[0]["done"]' <<<"$st")
        ztask results "$job4" --json >"$logdir/before-$job4.jsonl" 2>>"$logdir/job4.err"
        mid=$(dc 30 ps -q master | head -n 1)
        restarts=$(docker inspect -f '{{.RestartCount}}' "$mid")
        # PID 1 is tini (init: true); the master is the process named
        # ztask-master. The pid is found first and killed by a second exec:
        # the kill ends the container (tini exits with the master), which can
        # tear the exec session down before it reports, so the kill's own exit
        # status proves nothing (CI saw exactly that). What proves the crash is
        # the container's restart count going up: only its death does that (a
        # `compose restart` would not). Docker's event log is no proof either:
        # it keeps the last 256 events, and every `docker exec` adds three.
        mpid=$(timeout --foreground 30 docker exec "$mid" sh -c '
            for p in /proc/[0-9]*; do
                [ "$(cat $p/comm 2>/dev/null)" = ztask-master ] && echo "${p#/proc/}" && exit 0
            done
            exit 1')
        if [ -n "$mpid" ]; then
            # kill is the shell's builtin: the image has no /bin/kill.
            timeout --foreground 30 docker exec "$mid" sh -c 'kill -KILL "$1"' sh "$mpid" \
                >>"$logdir/kill.log" 2>&1
        fi
        # The restart policy brings the container back: wait for a new start.
        deadline=$(( $(date +%s) + 60 ))
        while [ -n "$mpid" ] && [ "$(date +%s)" -lt $deadline ] \
            && [ "$(docker inspect -f '{{.RestartCount}}' "$mid")" = "$restarts" ]; do
            sleep 0.5
        done
        if [ -z "$mpid" ]; then
            fail "job 4: no process named ztask-master in the master's container"
            dc 60 restart master >>"$logdir/restart.log" 2>&1
        elif [ "$(docker inspect -f '{{.RestartCount}}' "$mid")" != "$restarts" ]; then
            pass "job 4: SIGKILLed the master (pid $mpid) with $before of 2000 done; restart: unless-stopped brought it back"
        else
            fail "job 4: the master's container did not die and restart within 60s of SIGKILL to pid $mpid: $(tail -n 2 "$logdir/kill.log")"
            dc 60 restart master >>"$logdir/restart.log" 2>&1
        fi
    else
        fail "job 4: $st"
    fi
    wait_health 90 || fail "job 4: master healthy again after the crash"
    wait_job "$job4" "job 4: completes after the master crash" "$js"
    check_job "$job4" "job 4: results after a master crash" --unchanged "$logdir/before-$job4.jsonl"
fi

# ------------------------------- 5: down (keeping the volume) and up again

if [ -n "${job1:-}" ]; then
    docker rm -f "$cli_ctr" >/dev/null 2>&1
    cli_ctr=
    # `down` deletes the containers and their logs: keep them first.
    dc 30 logs --no-color --timestamps >"$logdir/cluster-first.log" 2>&1
    s=$(date +%s)
    if dc 120 down -t 10 >>"$logdir/down.log" 2>&1 && dc 300 up -d --scale worker=1 >>"$logdir/up.log" 2>&1 \
        && wait_health 90; then
        cli_ctr=$(dc 120 run -d --no-deps --entrypoint sleep cli 3600 2>>"$logdir/up.log" | tail -n 1)
        total=$(job_field "$job1" done)
        if [ "$total" = 2000 ]; then
            pass "down + up keeps the volume: job 1 still has 2000 done ($(( $(date +%s) - s ))s)"
        else
            fail "down + up: job 1 done is '$total', want 2000"
        fi
        # Same keys after the restart: the master's public key is unchanged
        # and the workers and the cli container got in with theirs.
        if [ -n "$master_pub" ] && [ "$(docker exec "$(dc 30 ps -q master | head -n 1)" \
                cat /var/lib/ztask/keys/master.pub 2>/dev/null)" = "$master_pub" ] \
            && wait_workers 1 60 >/dev/null; then
            pass "down + up keeps the keys: same master key, a worker registered with its key"
        else
            fail "down + up: the master's key changed or no worker registered"
        fi
        cp "$logdir/results-$job1.jsonl" "$logdir/before-up-$job1.jsonl"
        check_job "$job1" "down + up: job 1's results" --unchanged "$logdir/before-up-$job1.jsonl"
    else
        fail "down (keeping the volume) and up again"
    fi
fi

# -------------------------------------------------------------- teardown

save_logs
teardown
left=$(docker ps -aq --filter "label=com.docker.compose.project=$project"; \
       docker network ls -q --filter "label=com.docker.compose.project=$project"; \
       docker volume ls -q --filter "label=com.docker.compose.project=$project")
if [ -z "$left" ]; then
    pass "down -v --remove-orphans leaves no containers, networks or volumes"
else
    fail "left behind after down -v: $(echo $left)"
fi

summary
[ "$failed" -eq 0 ]
