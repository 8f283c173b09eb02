#!/bin/sh
# Makes the three CURVE key pairs a Swarm or Kubernetes deployment of
# ztask needs, and the token of the master's --http, in one directory
# (docs/deploy.md):
#
#   deploy/make-keys.sh DIR [IMAGE]
#
#   DIR/master.key  master.pub    the master's pair
#   DIR/worker.key  worker.pub    one pair every worker replica shares
#   DIR/client.key  client.pub    the CLI's pair (the master's container
#                                 holds it too, for its health check)
#   DIR/http.token                the master's --http-token file: one read
#                                 token (/metrics and the dashboard; add
#                                 "TOKEN control" lines for cancel/retry)
#
# The .pub files are the allowlists: worker.pub is the master's --workers
# list and client.pub its --clients list (a list file takes the
# `public-key = "..."` lines as they are; add more people's .pub lines to
# it). Runs `ztask keygen` from PATH, or else inside IMAGE (default
# ztask:local) as the calling user, so nothing but docker is needed on
# the host. Refuses to overwrite: a pair already in DIR is kept as it is.
# Exit 0 when all three pairs and the token exist afterwards.
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ "${1#-}" != "$1" ]; then
    sed -n '2,22s/^# \{0,1\}//p' "$0" >&2
    exit 2
fi
dir=$1
image=${2:-ztask:local}

# Secret keys are made 0600 by keygen; the directory is private as well.
mkdir -p "$dir"
chmod 0700 "$dir"
dir=$(cd "$dir" && pwd)

for name in master worker client; do
    if [ -f "$dir/$name.key" ] && [ -f "$dir/$name.pub" ]; then
        echo "$dir/$name.key: kept (already there)"
        continue
    fi
    if command -v ztask >/dev/null 2>&1; then
        ztask keygen "$name" --dir "$dir" >/dev/null
    else
        docker run --rm --user "$(id -u):$(id -g)" -v "$dir:/keys" --entrypoint ztask \
            "$image" keygen "$name" --dir /keys >/dev/null
    fi
    echo "$dir/$name.key: made"
done

# A non-loopback --http needs a token (docs/security.md); 32 random bytes,
# letters and digits only so it needs no quoting in a header.
if [ -s "$dir/http.token" ]; then
    echo "$dir/http.token: kept (already there)"
else
    (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '\n/+=' >"$dir/.http.token.new" \
        && echo >>"$dir/.http.token.new" && mv -f "$dir/.http.token.new" "$dir/http.token")
    echo "$dir/http.token: made"
fi
