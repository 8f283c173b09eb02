#!/bin/sh
# ztask-docker-keys: the compose cluster's CURVE keys, made at the master's
# first start (installed in the image as /usr/local/bin/ztask-docker-keys).
#
#   ztask-docker-keys [COMMAND [ARGS...]]
#
# Makes each key pair that is missing, puts the public halves where the
# others read them, then execs COMMAND (docker-compose.yml: the master).
# Three places, three volumes, so each container mounts only its own:
#
#   /var/lib/ztask/keys   (the master's volume "state")
#       master.key master.pub      the master's pair
#       clients/ workers/          its allowlists (--clients, --workers)
#   /etc/ztask/worker     (volume "worker-keys", mounted in the workers)
#       worker.key worker.pub      one pair every worker replica shares
#       master.pub
#   /etc/ztask/client     (volume "client-keys": the cli service, and the
#       client.key client.pub      master's and workers' health checks)
#       master.pub
#
#   /etc/ztask/metrics    (volume "metrics-token": the master and Prometheus)
#       http.tokens                the master's --http-token, one read token
#                                  (Prometheus sends it to scrape /metrics)
#
# Run again at every start: a pair that exists is kept, one that is gone
# (a deleted volume) is made anew and its public half listed again, so the
# cluster always comes up with keys that match. Other .pub files in the
# allowlist directories are left alone: add a person's key there, then
# `docker compose kill -s HUP master`.
set -eu

master_dir=${ZTASK_KEYS_MASTER:-/var/lib/ztask/keys}
worker_dir=${ZTASK_KEYS_WORKER:-/etc/ztask/worker}
client_dir=${ZTASK_KEYS_CLIENT:-/etc/ztask/client}
metrics_dir=${ZTASK_KEYS_METRICS:-/etc/ztask/metrics}

umask 077

# pair DIR NAME: DIR/NAME.key and DIR/NAME.pub unless NAME.key is there.
# keygen writes into a fresh directory and the .key is moved in last, so
# a NAME.key present always has its .pub beside it.
pair() {
    [ -f "$1/$2.key" ] && return 0
    tmp="$1/.new-$2"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    ztask keygen "$2" --dir "$tmp" >/dev/null
    mv -f "$tmp/$2.pub" "$1/$2.pub"
    mv -f "$tmp/$2.key" "$1/$2.key"
    rmdir "$tmp"
    echo "ztask-docker-keys: made $1/$2.key"
}

# install_pub SRC DST: copies a public key, replacing DST in one rename.
install_pub() {
    cp "$1" "$2.tmp"
    mv -f "$2.tmp" "$2"
}

mkdir -p "$master_dir/clients" "$master_dir/workers"
pair "$master_dir" master
pair "$worker_dir" worker
pair "$client_dir" client
install_pub "$master_dir/master.pub" "$worker_dir/master.pub"
install_pub "$master_dir/master.pub" "$client_dir/master.pub"
install_pub "$worker_dir/worker.pub" "$master_dir/workers/compose-worker.pub"
install_pub "$client_dir/client.pub" "$master_dir/clients/compose-client.pub"

# The HTTP token, when the metrics volume is mounted: 32 random bytes as
# text, written whole then renamed, so a reader never sees half of one.
if [ -d "$metrics_dir" ] && [ ! -s "$metrics_dir/http.tokens" ]; then
    head -c 32 /dev/urandom | base64 | tr -d '\n/+=' >"$metrics_dir/.http.tokens.new"
    echo >>"$metrics_dir/.http.tokens.new"
    mv -f "$metrics_dir/.http.tokens.new" "$metrics_dir/http.tokens"
    echo "ztask-docker-keys: made $metrics_dir/http.tokens"
fi

[ $# -eq 0 ] || exec "$@"
