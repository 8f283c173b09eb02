#!/bin/sh
# Writes the man pages of the three programs from their --help, with
# help2man (Debian: help2man), so the pages never drift from the programs.
#   scripts/gen-man.sh BIN_DIR OUT_DIR
# ztask.1 also gets a COMMANDS section: each command's `ztask COMMAND
# --help`, verbatim. Run by `make man` (and so by `make install`).
set -eu
bin=${1:?usage: gen-man.sh BIN_DIR OUT_DIR}
out=${2:?usage: gen-man.sh BIN_DIR OUT_DIR}
command -v help2man >/dev/null || {
    echo "gen-man.sh: help2man is not installed (Debian: help2man); run scripts/install-deps.sh --ci" >&2
    exit 1
}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Verbatim text for roff: backslashes doubled as \e, a leading . or ' made
# literal.
verbatim() {
    sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
}

inc="$tmp/ztask.h2m"
{
    echo "[COMMANDS]"
    "$bin/ztask" --help | awk '/^Commands:/ { on = 1; next } on && /^[^ ]/ { on = 0 } on && /^  [a-z]/ { print $1 }' |
    while read -r cmd; do
        echo ".SS $cmd"
        echo ".nf"
        "$bin/ztask" "$cmd" --help | verbatim
        echo ".fi"
    done
    echo "[SEE ALSO]"
    echo "ztask-master(1), ztask-worker(1); docs/cli.md in the source tree."
} >"$inc"

help2man --no-info --no-discard-stderr --section 1 \
    --name "submit jobs to a ztask master and report on them" \
    --include "$inc" --output "$out/ztask.1" "$bin/ztask"
printf '[SEE ALSO]\nztask(1), ztask-worker(1); docs/ in the source tree.\n' >"$tmp/master.h2m"
help2man --no-info --no-discard-stderr --section 1 \
    --name "the ztask master: jobs, tasks and workers, kept in SQLite" \
    --include "$tmp/master.h2m" --output "$out/ztask-master.1" "$bin/ztask-master"
printf '[SEE ALSO]\nztask(1), ztask-master(1); docs/worker.md in the source tree.\n' >"$tmp/worker.h2m"
help2man --no-info --no-discard-stderr --section 1 \
    --name "runs tasks for a ztask master" \
    --include "$tmp/worker.h2m" --output "$out/ztask-worker.1" "$bin/ztask-worker"
