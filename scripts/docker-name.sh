#!/bin/sh
# ztask-docker-name: runs a ztask program named after its container
# (installed in the image as /usr/local/bin/ztask-docker-name).
#
#   ztask-docker-name ztask-worker [ARGS...]
#
# A container's hostname is its id (3f9c2a7d1b0e), so the worker's default
# name, HOSTNAME-PID, tells nobody which replica it is. Docker's DNS knows
# the container's name: compose calls replicas PROJECT-SERVICE-N (compose
# v2) or PROJECT_SERVICE_N (docker-compose v1), and answers a reverse
# lookup of the container's address with NAME.NETWORK. This asks it
# (getent -s dns: past /etc/hosts, which maps the address to the id) and
# runs the program with --name NAME before the given arguments, so an
# explicit --name still wins. ZTASK_WORKER_NAME, when set, is the name
# instead. Without a name from either (no DNS, the default bridge network),
# the program runs as given.
set -eu
[ $# -ge 1 ] || { echo "usage: ztask-docker-name PROGRAM [ARGS...]" >&2; exit 2; }
prog=$1
shift
name=${ZTASK_WORKER_NAME:-}
if [ -z "$name" ]; then
    addr=$(getent hosts "$(cat /etc/hostname)" 2>/dev/null | awk '{ print $1; exit }') || addr=
    if [ -n "$addr" ]; then
        fqdn=$(getent -s dns hosts "$addr" 2>/dev/null | awk '{ print $2; exit }') || fqdn=
        name=${fqdn%%.*}
    fi
fi
if [ -n "$name" ]; then
    exec "$prog" --name "$name" "$@"
fi
echo "ztask-docker-name: no container name found (not on a compose network?); $prog keeps its default name" >&2
exec "$prog" "$@"
