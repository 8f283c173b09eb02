# ztask in a container: ztask-master, ztask-worker and the ztask CLI.
#
#   docker build -t ztask .
#   docker compose up -d --scale worker=4        (see docker-compose.yml)
#
# Two stages: "build" has the compiler and the -dev packages and runs
# `make`; the runtime stage has only the four shared libraries the
# programs link against, the programs, the example plugin, and a non-root
# user. Based on debian:bookworm-slim, which registries serve; machines
# without a registry build the same tag locally with
# scripts/docker-base-image.sh (docs/docker.md).
#
# Package downloads: apt reads the image's own Debian sources. Where the
# default bridge network cannot reach the mirror, build with the host's
# network: `docker build --network host`, or ZTASK_BUILD_NETWORK=host for
# docker-compose.yml. Where apt needs a proxy, pass it as a build argument
# (--build-arg http_proxy=...); docker does not keep it in the image.

ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        build-essential pkg-config libzmq3-dev libsodium-dev libcjson-dev libsqlite3-dev \
        libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The source tree minus what .dockerignore lists (local builds, databases,
# docs, tests), so editing those does not rebuild the programs.
COPY . .
RUN make -j"$(nproc)" all \
 && strip build/release/bin/* build/release/lib/libmytasks.so
# Marks this stage's (untagged) image, so a cleanup can find old ones.
LABEL org.opencontainers.image.title="ztask-build"

FROM ${BASE_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends libzmq5 libsodium23 libcjson1 libsqlite3-0 \
        libmicrohttpd12 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 ztask \
 && useradd --system --uid 10001 --gid ztask --home-dir /var/lib/ztask \
        --shell /usr/sbin/nologin ztask \
 && install -d -o ztask -g ztask -m 0750 /var/lib/ztask \
 && install -d -o ztask -g ztask -m 0700 /etc/ztask/worker /etc/ztask/client /etc/ztask/metrics
COPY --from=build /src/build/release/bin/ztask-master \
                  /src/build/release/bin/ztask-worker \
                  /src/build/release/bin/ztask /usr/local/bin/
# The compose cluster's keys, made at the master's first start
# (docker-compose.yml). /etc/ztask/worker and /etc/ztask/client above are
# where their volumes mount: a fresh volume takes the directory's owner.
COPY scripts/docker-keys.sh /usr/local/bin/ztask-docker-keys
# Names a worker after its container (PROJECT-worker-N), not its id.
COPY scripts/docker-name.sh /usr/local/bin/ztask-docker-name
COPY --from=build /src/build/release/lib/libmytasks.so /usr/local/lib/ztask/
LABEL org.opencontainers.image.title="ztask" \
      org.opencontainers.image.description="ztask master, worker and CLI (distributed tasks over ZeroMQ)"
USER ztask
WORKDIR /var/lib/ztask
# The master keeps its state (SQLite database and WAL) here; mount a volume
# on it. No VOLUME line: it would give every worker container an anonymous
# volume it never uses.
# 5555: API (CLI and worker hello); 5556: worker reports. Task pipes use
# ephemeral ports unless the master runs with --task-ports.
EXPOSE 5555 5556
# No ENTRYPOINT: the same image runs any of the three programs, e.g.
#   docker run ztask ztask-master --bind 0.0.0.0 --db /var/lib/ztask/ztask.db
CMD ["ztask", "--help"]
