#!/usr/bin/env bash
# A ztask cluster on this machine for a minute: a master (with its web
# dashboard and /metrics on loopback), two workers with four threads each,
# and a 1,000-task job. `make demo` runs it.
#
#   scripts/demo.sh BIN_DIR      (BIN_DIR holds ztask-master, ztask-worker, ztask)
#
# Everything lives in a temp directory (database, logs) that is removed at
# the end; the cluster is stopped with SIGTERM on any exit, Ctrl-C included.
set -euo pipefail

bin=${1:?usage: scripts/demo.sh BIN_DIR}
bin=$(cd "$bin" && pwd)
for p in ztask-master ztask-worker ztask; do
    [ -x "$bin/$p" ] || { echo "demo: $bin/$p not found (run make first)" >&2; exit 2; }
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/ztask-demo-XXXXXX")
pids=()

stop_cluster() {
    local rc=$?
    trap - EXIT INT TERM
    if [ ${#pids[@]} -gt 0 ]; then
        echo
        echo "== stopping the cluster (SIGTERM)"
        # Workers first, so they can say goodbye to a master that is still there.
        for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
            kill -TERM "${pids[i]}" 2>/dev/null || true
            wait "${pids[i]}" 2>/dev/null || true
        done
    fi
    if [ $rc -ne 0 ] && [ -d "$dir" ]; then
        echo "demo failed (exit $rc); the last log lines:" >&2
        tail -n 5 "$dir"/*.log >&2 || true
    fi
    rm -rf "$dir"
    exit $rc
}
trap stop_cluster EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Polls a log file for a line matching a pattern, for at most $3 seconds.
wait_for_line() {
    local file=$1 pattern=$2 secs=$3 i
    for ((i = 0; i < secs * 20; i++)); do
        if grep -q -- "$pattern" "$file" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "demo: no '$pattern' in $file after ${secs}s" >&2
    return 1
}

echo "== starting a master (database and logs in $dir)"
# Port 0: the master picks free ports and prints them in its listening
# lines; --http serves /metrics and the dashboard on loopback
# (ZTASK_DEMO_HTTP=127.0.0.1:8080 for a fixed port).
"$bin/ztask-master" --db "$dir/demo.db" --port 0 --bind 127.0.0.1 \
    --http "${ZTASK_DEMO_HTTP:-127.0.0.1:0}" 2>"$dir/master.log" &
pids+=($!)
wait_for_line "$dir/master.log" "event=listening" 20
api=$(grep -m1 -o 'api=tcp://[^ ]*' "$dir/master.log" | sed 's|api=tcp://||')
http=$(grep -m1 -o 'event=http_listening url=[^ ]*' "$dir/master.log" | sed 's|.*url=||')
echo "   master listening on $api"
echo "   dashboard: $http   (Prometheus metrics: ${http}metrics)"

root=()   # as root, a worker of a keyless master runs commands as root only when told
[ "$(id -u)" = 0 ] && root=(--allow-root)
for name in demo-a demo-b; do
    "$bin/ztask-worker" --master "$api" --threads 4 --name "$name" "${root[@]}" 2>"$dir/$name.log" &
    pids+=($!)
done
for name in demo-a demo-b; do
    wait_for_line "$dir/$name.log" "event=registered" 20
done
echo "== two workers registered (4 threads each)"
"$bin/ztask" --master "$api" workers
echo

echo "== ztask submit --array 1-1000 --wait -- sh -c 'echo {}; sleep 0.01'"
set +e
"$bin/ztask" --master "$api" submit --name demo --array 1-1000 --wait -- \
    sh -c 'echo {}; sleep 0.01' | tee "$dir/submit.out"
rc=${PIPESTATUS[0]}
set -e
# Ctrl-C: ztask says "interrupted" and exits 130 instead of dying of the
# signal, so bash does not stop by itself; the daemons got the SIGINT too.
if [ "$rc" -ge 128 ]; then
    exit "$rc"
fi
job=$(sed -n 's/^job \([0-9]*\):.*/\1/p' "$dir/submit.out" | head -n 1)
if [ -z "$job" ]; then
    echo "demo: the submit printed no job id" >&2
    exit 1
fi
echo

echo "== ztask status $job"
"$bin/ztask" --master "$api" status "$job"
echo
echo "== ztask results $job (first 10)"
"$bin/ztask" --master "$api" results "$job" | head -n 11 || true
echo
echo "== ztask stats"
"$bin/ztask" --master "$api" stats
if command -v curl >/dev/null; then
    echo
    echo "== curl ${http}metrics (the tasks' series)"
    curl -s "${http}metrics" | grep -E '^ztask_tasks(_finished_total|_submitted_total)' || true
fi
# ZTASK_DEMO_HOLD=SEC keeps the cluster up that long to look at the dashboard.
if [ "${ZTASK_DEMO_HOLD:-0}" -gt 0 ]; then
    echo
    echo "== the cluster stays up ${ZTASK_DEMO_HOLD}s: open $http (Ctrl-C stops it)"
    sleep "$ZTASK_DEMO_HOLD"
fi
exit "$rc"
