#!/bin/sh
# Installs the systems `make bench-peers` compares ztask with, from Debian:
# gearmand and libgearman (C client and workers), beanstalkd, Redis with
# Celery 5 (python3-celery, python3-redis, for Debian's /usr/bin/python3),
# and GNU parallel. Packages already installed are left alone. Nothing is
# started: bench/peers.py starts its own servers on 127.0.0.1 and stops them.
#
# A package that cannot be installed (no network, no root, not in this
# release) is reported here and skipped by bench/peers.py with a line saying
# so; this script then still exits 0 so the rest of the comparison runs.
set -u

pkgs="gearman-job-server libgearman-dev beanstalkd redis-server python3-celery python3-redis parallel"

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "bench-peers: installing from Debian:$missing"
if [ "$(id -u)" = 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo -n"
else
    echo "bench-peers: not root and no sudo: cannot install$missing (those peers are skipped)" >&2
    exit 0
fi

# On a systemd machine Debian may start the packaged services (redis-server,
# beanstalkd, gearman-job-server) on install; peers.py does not use them, it
# runs its own instances on free ports.
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq || echo "bench-peers: apt-get update failed; trying the cached lists" >&2
for p in $missing; do
    if ! $sudo apt-get install -y -qq --no-install-recommends "$p" >/dev/null; then
        echo "bench-peers: could not install $p (skipped in the comparison)" >&2
    fi
done
exit 0
