# lib.sh: what every chaos scenario shares. Sourced, never run.
#
# A scenario script sources this file, calls chaos_begin NAME, starts
# daemons with start_master / start_worker (every process it starts is
# remembered by PID and killed on any exit, Ctrl-C included), drives them
# with zt (the CLI), and ends with chaos_pass or chaos_fail. Waits poll a
# condition with a deadline (wait_for, wait_line); the only plain sleeps are
# the deliberate kill cadences of the scenarios themselves.
#
# Environment:
#   CHAOS_BUILD  the build directory (build/release), set by run.sh
#   CHAOS_SCALE  1 = CI size (default); 10 = the full sizes of issue 5
#   CHAOS_KEEP   1 = keep the temp directory even when the scenario passes
#
# Output: the scenario's figures as "  key: value" lines, then one
# "PASS: name" / "FAIL: name: why" / "SKIP: name: why" line. Exit 0 pass,
# 1 fail, 77 skip.

set -u
set -o pipefail

: "${CHAOS_BUILD:?CHAOS_BUILD is not set (run through tests/chaos/run.sh)}"
CHAOS_SCALE=${CHAOS_SCALE:-1}
BIN=$CHAOS_BUILD/bin
TOOLS=$CHAOS_BUILD/chaos
PLUGIN=$TOOLS/libchaos.so

CHAOS_NAME=
CHAOS_DIR=
CHAOS_PIDS=()          # every background process this scenario started
CHAOS_CLEANUPS=()      # extra commands run on exit (umount ...)
CHAOS_DONE=0
API=                   # the master's API address (host:port), once started
MASTER_PID=
MASTER_LOG=
MASTER_RUNS=0

# size CI FULL: CI at scale 1, FULL at scale 10, proportional in between
# and beyond (never below CI).
size() {
    local ci=$1 full=$2 n
    if [ "$CHAOS_SCALE" -le 1 ]; then
        echo "$ci"
        return
    fi
    n=$((full * CHAOS_SCALE / 10))
    [ "$n" -lt "$ci" ] && n=$ci
    echo "$n"
}

chaos_begin() {
    CHAOS_NAME=$1
    CHAOS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ztask-chaos-$1-XXXXXX")
    trap chaos_exit EXIT
    trap 'chaos_fail "interrupted"' INT TERM
    ulimit -c 0 # the poison task aborts workers: no core files
    export ZTASK_REQUEST_TIMEOUT=${ZTASK_REQUEST_TIMEOUT:-10}
    for p in "$BIN/ztask-master" "$BIN/ztask-worker" "$BIN/ztask" "$TOOLS/chaos-check" \
             "$TOOLS/chaos-storm" "$PLUGIN"; do
        [ -e "$p" ] || chaos_fail "$p is missing (make chaos builds it)"
    done
    echo "== $CHAOS_NAME (scale $CHAOS_SCALE, dir $CHAOS_DIR)"
}

# Kills every process we started (by PID: SIGCONT first, for stopped ones,
# then SIGKILL), runs the cleanups, removes the directory unless asked to
# keep it or the scenario failed.
chaos_exit() {
    local rc=$? pid c
    trap - EXIT INT TERM
    for pid in "${CHAOS_PIDS[@]}"; do
        kill -CONT "$pid" 2>/dev/null
        kill -KILL "$pid" 2>/dev/null
    done
    for pid in "${CHAOS_PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    for c in "${CHAOS_CLEANUPS[@]}"; do
        eval "$c" || true
    done
    if [ "$CHAOS_DONE" -eq 0 ] && [ $rc -eq 0 ]; then
        echo "FAIL: $CHAOS_NAME: the script ended without a verdict"
        rc=1
    fi
    if [ -n "$CHAOS_DIR" ] && [ -d "$CHAOS_DIR" ]; then
        if [ $rc -eq 0 ] && [ "${CHAOS_KEEP:-0}" != 1 ] || [ $rc -eq 77 ]; then
            rm -rf "$CHAOS_DIR"
        else
            echo "   (logs kept in $CHAOS_DIR)"
        fi
    fi
    exit $rc
}

# Sanitizer builds (make chaos VARIANT=asan|tsan): any report in a
# daemon's log fails the scenario. The marks are those of
# tests/e2e/harness.c (s_sanitizer_marks); run.sh looks for them in each
# scenario's stderr too (the CLI's, chaos-storm's and chaos-check's).
SANITIZER_MARKS=(
    'ERROR: AddressSanitizer' 'WARNING: AddressSanitizer' 'ERROR: LeakSanitizer'
    'LeakSanitizer' 'WARNING: ThreadSanitizer' 'ERROR: ThreadSanitizer'
    'runtime error:' 'ERROR: UndefinedBehaviorSanitizer'
)
# sanitizer_grep FILE...: the files holding a mark (none: exit 1).
sanitizer_grep() {
    local args=() m
    for m in "${SANITIZER_MARKS[@]}"; do args+=(-e "$m"); done
    grep -lF "${args[@]}" -- "$@" 2>/dev/null
}
sanitizer_reports() { sanitizer_grep "$CHAOS_DIR"/*.log; }

chaos_pass() {
    local bad
    bad=$(sanitizer_reports)
    [ -z "$bad" ] || chaos_fail "sanitizer report in $(echo $bad)"
    CHAOS_DONE=1
    echo "PASS: $CHAOS_NAME${1:+: $1}"
    exit 0
}

chaos_skip() {
    CHAOS_DONE=1
    echo "SKIP: $CHAOS_NAME: $1"
    exit 77
}

# chaos_fail WHY: prints the last lines of the latest logs, then the verdict.
chaos_fail() {
    CHAOS_DONE=1
    local f
    # The four logs written last, three lines each (the rest are kept).
    if [ -n "$CHAOS_DIR" ]; then
        for f in $(ls -t "$CHAOS_DIR"/*.log 2>/dev/null | head -n 4); do
            [ -s "$f" ] || continue
            echo "   --- tail $(basename "$f")"
            tail -n 3 "$f" | cut -c1-240 | sed 's/^/   /'
        done
    fi
    echo "FAIL: $CHAOS_NAME: $1"
    exit 1
}

# rss_judged: 0 for sanitizer builds, whose allocators keep freed memory
# in a quarantine (ASan: up to 256 MiB), so RSS growth means nothing there.
rss_judged() {
    case $CHAOS_BUILD in
    *asan* | *tsan*) return 1 ;;
    esac
    return 0
}

figure() { printf '  %-34s %s\n' "$1:" "$2"; }

now_ms() { date +%s%3N; }

# wait_for SECS CMD...: runs CMD every 50 ms until it succeeds; 1 after SECS.
wait_for() {
    local secs=$1 deadline
    shift
    deadline=$(($(now_ms) + secs * 1000))
    while ! "$@"; do
        [ "$(now_ms)" -ge "$deadline" ] && return 1
        sleep 0.05
    done
    return 0
}

# log_count FILE PATTERN: lines holding the fixed string PATTERN.
log_count() { grep -cF -- "$2" "$1" 2>/dev/null || true; }
_line_seen() { [ "$(log_count "$1" "$2")" -ge "$3" ]; }
# wait_line FILE PATTERN SECS [COUNT]
wait_line() { wait_for "$3" _line_seen "$1" "$2" "${4:-1}"; }

alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# log_within FILE MAX_BYTES WHAT: the log of a stormed daemon is at most
# MAX_BYTES (a flood must not fill the disk: every line a peer can cause
# is rate-limited, 10 a second per kind, since 4715f03), and every line in
# it is one record: it starts with a timestamp and a level (peer text
# cannot start a line of its own). Prints the figures.
log_within() {
    local file=$1 max=$2 what=$3 bytes lines stray
    bytes=$(stat -c %s "$file")
    lines=$(wc -l <"$file")
    figure "$what log" "$bytes bytes, $lines lines (bound $max bytes)"
    [ "$bytes" -le "$max" ] || chaos_fail "the $what log is $bytes bytes, over its bound of $max"
    stray=$(grep -cvE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z (DEBUG|INFO|WARN|ERROR) ' "$file")
    [ "$stray" -eq 0 ] || chaos_fail "$stray lines of the $what log are not records of their own: $(grep -m1 -vE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z (DEBUG|INFO|WARN|ERROR) ' "$file" | cut -c1-120)"
}

# rss_kb PID [VmRSS|VmHWM]
rss_kb() { awk -v k="${2:-VmRSS}:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }

# free_port_pair: a port P such that neither P nor P+1 is in use (no socket
# in /proc/net/tcp*, listening or not), below the ephemeral range so no
# outgoing connection takes it meanwhile. The master with --port P takes
# both, and keeps them across restarts.
free_port_pair() {
    local used p i
    # Local ports, hex in /proc (mawk has no strtonum: bash converts).
    used=$(for h in $(awk 'NR > 1 { split($2, a, ":"); print a[2] }' /proc/net/tcp \
        /proc/net/tcp6 2>/dev/null | sort -u); do echo $((16#$h)); done)
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 10000))
        if ! grep -qx "$p" <<<"$used" && ! grep -qx "$((p + 1))" <<<"$used"; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# start_master PORT ARGS...: a master on 127.0.0.1:PORT (0 = any) with the
# database and flags given; waits for its listening line, sets API,
# MASTER_PID, MASTER_LOG.
start_master() {
    local port=$1
    shift
    MASTER_RUNS=$((MASTER_RUNS + 1))
    MASTER_LOG=$CHAOS_DIR/master.$MASTER_RUNS.log
    "$BIN/ztask-master" --bind 127.0.0.1 --port "$port" "$@" 2>"$MASTER_LOG" &
    MASTER_PID=$!
    CHAOS_PIDS+=("$MASTER_PID")
    wait_line "$MASTER_LOG" "event=listening" 20 ||
        chaos_fail "master run $MASTER_RUNS did not come up: $(tail -n 2 "$MASTER_LOG")"
    API=$(grep -m1 -o 'api=tcp://[^ ]*' "$MASTER_LOG" | sed 's|api=tcp://||')
    export ZTASK_MASTER=$API
}

# start_worker NAME THREADS ARGS...: a worker with the chaos plugin; waits
# for its registration. Sets WORKER_PID and WORKER_LOG. Each start of the
# same NAME logs to a new file (NAME.K.log).
declare -A WORKER_RUNS=()
start_worker() {
    local name=$1 threads=$2 k
    shift 2
    k=$((${WORKER_RUNS[$name]:-0} + 1))
    WORKER_RUNS[$name]=$k
    WORKER_LOG=$CHAOS_DIR/$name.$k.log
    # As root (CI), a worker of a master without keys refuses to run
    # commands as root unless told.
    local root=()
    [ "$(id -u)" = 0 ] && root=(--allow-root)
    "$BIN/ztask-worker" --master "$API" --threads "$threads" --name "$name" \
        --plugin "$PLUGIN" "${root[@]}" "$@" 2>"$WORKER_LOG" &
    WORKER_PID=$!
    CHAOS_PIDS+=("$WORKER_PID")
    wait_line "$WORKER_LOG" "registered worker=" 20 ||
        chaos_fail "worker $name (run $k) did not register: $(tail -n 2 "$WORKER_LOG")"
}

# zt ARGS...: the CLI against the current master.
zt() { "$BIN/ztask" --master "$API" "$@"; }

# job_field JOB FIELD: one number from `ztask status JOB --json` (empty when
# the master does not answer).
job_field() {
    zt status "$1" --json 2>/dev/null | grep -o "\"$2\":[0-9]*" | head -n 1 | cut -d: -f2
}

# stats_field FIELD
stats_field() {
    zt stats --json 2>/dev/null | grep -o "\"$1\":[0-9.]*" | head -n 1 | cut -d: -f2
}

# job_finished JOB: every task of the job is done, failed or cancelled.
job_finished() {
    local st
    st=$(zt status "$1" --json 2>/dev/null) || return 1
    case $st in
    *'"state":"done"'* | *'"state":"failed"'* | *'"state":"cancelled"'*) return 0 ;;
    esac
    return 1
}

# jobs_finished EXPECT_FILE: every job named in the file ("JOB N" lines)
# is done, failed or cancelled; one `ztask jobs` call however many jobs.
jobs_finished() {
    zt jobs --json 2>/dev/null | awk -v f="$1" '
        BEGIN { while ((getline l < f) > 0) { split(l, a, " "); want[a[1]] = 1; n++ } }
        match($0, /"job":[0-9]+/) {
            j = substr($0, RSTART + 6, RLENGTH - 6)
            if ((j in want) && $0 ~ /"state":"(done|failed|cancelled)"/) ok++
        }
        END { exit !(n > 0 && ok == n) }'
}

# submit_record JOB_VAR N ARGS_JSON [ztask submit options...]: submits an
# array job 0..N-1 of the record function; sets the named variable to the
# job id. Returns the CLI's exit code; its output is in $CHAOS_DIR/submit.out.
submit_record() {
    local var=$1 n=$2 args=$3 out rc
    shift 3
    out=$(zt submit --fn record --args "$args" --array "0-$((n - 1))" "$@" 2>&1)
    rc=$?
    echo "$out" >"$CHAOS_DIR/submit.out"
    printf -v "$var" '%s' "$(sed -n 's/^job \([0-9]*\):.*/\1/p' <<<"$out" | head -n 1)"
    return $rc
}

# results_of FILE JOB...: every listed job's results as JSON lines.
results_of() {
    local file=$1 j
    shift
    : >"$file"
    for j in "$@"; do
        zt results "$j" --json >>"$file" || return 1
    done
}

# check ARGS...: runs the checker, its table going to stdout.
check() { "$TOOLS/chaos-check" --name "$CHAOS_NAME" "$@"; }

# integrity DB: "ok" or what sqlite says. Uses the sqlite3 CLI, installed
# on demand (root only; Debian package sqlite3).
integrity() {
    if ! command -v sqlite3 >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null 2>&1 ||
                { apt-get update -qq >/dev/null 2>&1 &&
                  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null 2>&1; }
        fi
        command -v sqlite3 >/dev/null 2>&1 || { echo "no sqlite3 CLI"; return 1; }
    fi
    sqlite3 "$1" 'PRAGMA integrity_check' 2>&1 | head -n 5
}

# stop_master: SIGTERM, expecting exit 0 within 15 s.
stop_master() {
    local rc
    kill -TERM "$MASTER_PID" 2>/dev/null
    if ! wait_for 15 eval '! alive '"$MASTER_PID"; then
        chaos_fail "the master did not stop on SIGTERM within 15 s"
    fi
    wait "$MASTER_PID"
    rc=$?
    [ $rc -eq 0 ] || chaos_fail "the master exited $rc on SIGTERM, want 0"
}
