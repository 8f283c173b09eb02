#!/usr/bin/env bash
# Runs the libFuzzer targets built by `make fuzz` (see docs/fuzzing.md).
#
#   tests/fuzz/run.sh check-cc CC
#       fails with install instructions unless CC can build a libFuzzer target
#   tests/fuzz/run.sh [--replay] BUILD SECONDS JOBS TARGET...
#       --replay: first run every seed and saved crash once (fails on any);
#       then fuzz each target for SECONDS, JOBS targets at a time.
#   tests/fuzz/run.sh merge BUILD TARGET...
#       folds what the runs found (BUILD/corpus/T) into the seed corpus
#       (tests/fuzz/corpus/T), keeping only inputs that add coverage, each
#       cut to 1 KiB so the corpus in the repository stays small
#
# Each target reads tests/fuzz/corpus/T and tests/fuzz/regress/T (never
# written) and BUILD/corpus/T (its working corpus, kept between runs);
# crashes go to BUILD/artifacts/T/, logs to BUILD/logs/T.log. FUZZ_ARGS adds
# libFuzzer flags to every fuzzing run (-max_len=..., -use_value_profile=1).
# Exit status 0
# only when every target ran its time with no crash, leak, timeout, out of
# memory or broken property.
set -u
here=$(cd "$(dirname "$0")" && pwd)

# Per-input limits: a parser that takes 10 s on a few kilobytes, or 2 GiB,
# is a denial of service waiting to happen, so either counts as a failure.
TIMEOUT_S=10
RSS_MB=2048

dict_for() {
    case "$1" in
    req|reply|pipe|report|spec|result|jsonl|each) echo "$here/dict/proto.dict" ;;
    *) [ -f "$here/dict/$1.dict" ] && echo "$here/dict/$1.dict" ;;
    esac
}

check_cc() {
    local cc=$1 tmp
    if ! command -v "$cc" >/dev/null 2>&1; then
        echo "make fuzz: '$cc' not found. libFuzzer needs clang:"
        echo "    apt-get install -y clang libclang-rt-14-dev"
        echo "(or set FUZZ_CC to a clang with libFuzzer)"
        return 1
    fi
    tmp=$(mktemp -d)
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void) d; (void) n; return 0; }' \
        >"$tmp/t.c"
    if ! "$cc" -fsanitize=fuzzer,address,undefined "$tmp/t.c" -o "$tmp/t" >"$tmp/log" 2>&1; then
        echo "make fuzz: $cc cannot link a libFuzzer target:"
        sed 's/^/    /' "$tmp/log" | head -n 5
        echo "Install the runtime: apt-get install -y clang libclang-rt-14-dev"
        rm -rf "$tmp"
        return 1
    fi
    rm -rf "$tmp"
}

# Seed and regression inputs of target $1, one per line.
inputs_of() {
    find "$here/corpus/$1" "$here/regress/$1" -type f 2>/dev/null | sort
}

replay() {
    local build=$1 t=$2 bin=$1/bin/fuzz_$2 log=$1/logs/$2.replay.log
    local files
    mapfile -t files < <(inputs_of "$t")
    if [ "${#files[@]}" -eq 0 ]; then
        echo "replay $t: no seed corpus in tests/fuzz/corpus/$t"
        return 1
    fi
    # Files named on the command line are each run once, whole (no max_len cut).
    if ! "$bin" -timeout=$TIMEOUT_S -rss_limit_mb=$RSS_MB "${files[@]}" >"$log" 2>&1; then
        echo "replay $t: FAILED (log: $log)"
        grep -E '^(Running: |==[0-9]+==ERROR|==ztask-fuzz==|SUMMARY)' "$log" | tail -n 6 | sed 's/^/    /'
        return 1
    fi
    echo "replay $t: ${#files[@]} inputs ok"
}

# Fuzzes one target; prints one summary line; status 0 when clean.
fuzz_one() {
    local build=$1 t=$2 secs=$3
    local bin=$build/bin/fuzz_$t log=$build/logs/$t.log work=$build/corpus/$t art=$build/artifacts/$t/
    mkdir -p "$work" "$art"
    local dict args=()
    # Extra libFuzzer flags for every target, e.g. FUZZ_ARGS=-max_len=65536.
    read -r -a args <<<"${FUZZ_ARGS:-}"
    dict=$(dict_for "$t")
    [ -n "$dict" ] && args+=("-dict=$dict")
    local dirs=("$work" "$here/corpus/$t")
    [ -d "$here/regress/$t" ] && dirs+=("$here/regress/$t")
    local start=$SECONDS
    "$bin" -max_total_time="$secs" -timeout=$TIMEOUT_S -rss_limit_mb=$RSS_MB \
        -artifact_prefix="$art" -print_final_stats=1 "${args[@]}" "${dirs[@]}" >"$log" 2>&1
    local rc=$?
    local status=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: ' | tail -n 1)
    local cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$status")
    local ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$status")
    local corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$status")
    local runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log")
    local eps=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log")
    local rss=$(sed -nE 's/^stat::peak_rss_mb: *([0-9]+)/\1/p' "$log")
    if [ $rc -eq 0 ]; then
        printf '%-7s ok      %6ss  runs=%-10s exec/s=%-7s cov=%-5s ft=%-6s corpus=%-5s rss=%sMB\n' \
            "$t" "$((SECONDS - start))" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" \
            "${corp:-?}" "${rss:-?}"
        return 0
    fi
    printf '%-7s FAILED  (exit %d, log: %s)\n' "$t" "$rc" "$log"
    grep -E '^(==[0-9]+==ERROR|==ztask-fuzz==|SUMMARY|ERROR: libFuzzer)' "$log" | head -n 4 | sed 's/^/    /'
    local unit
    unit=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
    if [ -n "$unit" ]; then
        echo "    input saved: $unit"
        echo "    reproduce:   $bin $unit"
        echo "    minimise:    $bin -minimize_crash=1 -runs=100000 -artifact_prefix=$art $unit"
        echo "    then keep the minimised input in tests/fuzz/regress/$t/ (docs/fuzzing.md)"
    fi
    return 1
}

if [ "${1:-}" = check-cc ]; then
    check_cc "${2:-clang}"
    exit
fi

if [ "${1:-}" = merge ]; then
    shift
    build=${1:?usage: run.sh merge BUILD TARGET...}
    shift
    for t in "$@"; do
        [ -d "$build/corpus/$t" ] || continue
        "$build/bin/fuzz_$t" -merge=1 -max_len=1024 "$here/corpus/$t" "$build/corpus/$t" >"$build/logs/$t.merge.log" 2>&1 \
            && echo "merge $t: $(find "$here/corpus/$t" -type f | wc -l) seeds" \
            || { echo "merge $t: FAILED (log: $build/logs/$t.merge.log)"; exit 1; }
    done
    exit 0
fi

do_replay=0
if [ "${1:-}" = --replay ]; then
    do_replay=1
    shift
fi
build=${1:?usage: run.sh [--replay] BUILD SECONDS JOBS TARGET...}
secs=${2:?seconds}
jobs=${3:?jobs}
shift 3
[ "$#" -gt 0 ] || { echo "run.sh: no targets"; exit 2; }
mkdir -p "$build/logs"
failed=0

for t in "$@"; do
    [ -x "$build/bin/fuzz_$t" ] || { echo "run.sh: $build/bin/fuzz_$t not built"; exit 2; }
done

if [ $do_replay -eq 1 ]; then
    for t in "$@"; do
        replay "$build" "$t" || failed=$((failed + 1))
    done
    if [ $failed -gt 0 ]; then
        echo "fuzz: $failed target(s) fail on their own corpus; not fuzzing"
        exit 1
    fi
fi

echo "fuzzing $# target(s) for ${secs}s each, $jobs at a time (logs: $build/logs/)"
running=0
for t in "$@"; do
    if [ $running -ge "$jobs" ]; then
        wait -n || failed=$((failed + 1))
        running=$((running - 1))
    fi
    fuzz_one "$build" "$t" "$secs" &
    running=$((running + 1))
done
while [ $running -gt 0 ]; do
    wait -n || failed=$((failed + 1))
    running=$((running - 1))
done

echo
if [ $failed -gt 0 ]; then
    echo "fuzz: $failed of $# target(s) FAILED"
    exit 1
fi
echo "fuzz: $# target(s) clean"
