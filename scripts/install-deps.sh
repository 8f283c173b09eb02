#!/bin/sh
# Installs the Debian 12 packages ztask needs to build and test.
#   scripts/install-deps.sh        build + `make test` (libzmq, libsodium, cJSON,
#                                  SQLite, libmicrohttpd, Check,
#                                  python3-prometheus-client)
#   scripts/install-deps.sh --ci   also what CI's extra suites use: clang and its
#                                  sanitizer runtimes (make fuzz), valgrind (make
#                                  memcheck), iproute2 (the multi-host test),
#                                  sqlite3 (chaos checks), bc (CI's summary), and
#                                  docker-compose / python3 when missing (make
#                                  test-compose, where a docker engine is),
#                                  yamllint and python3-yaml (make lint-deploy),
#                                  python3-zmq and python3-pytest (make test-python),
#                                  chromium, chromium-driver, python3-selenium
#                                  (make test-browser), prometheus (promtool),
#                                  slurmctld, slurmd, slurm-client, munge (make test-slurm)
# Runs apt-get as root, or through sudo when not root.
set -e
# libsodium-dev: the master's claim tokens (master/claim.h); libzmq3-dev
# pulls it in already, named so that a libzmq built without it still builds;
# help2man: the man pages (make man, make install); man-db: the test that
# renders them (man -l); python3-prometheus-client: the parser the /metrics
# test (tests/e2e/test_http) uses
pkgs="build-essential libzmq3-dev libsodium-dev libcjson-dev check libsqlite3-dev libmicrohttpd-dev pkg-config help2man man-db python3-prometheus-client"
if [ "${1:-}" = "--ci" ]; then
    pkgs="$pkgs clang libclang-rt-14-dev iproute2 sqlite3 procps valgrind bc"
    # make lint-deploy: kubeconform is not in Debian; yamllint and a python3-yaml check are
    pkgs="$pkgs yamllint python3-yaml"
    pkgs="$pkgs python3-zmq python3-pytest"
    # make test-browser (chromium, its driver, selenium); promtool (prometheus)
    # for make lint-deploy's alert rules and the /metrics test
    pkgs="$pkgs chromium chromium-driver python3-selenium prometheus"
    # make test-slurm: a real single-node Slurm
    pkgs="$pkgs slurmctld slurmd slurm-client munge"
    # systemd-analyze verify on the installed units (tests/e2e/test_cli.c)
    command -v systemd-analyze >/dev/null || pkgs="$pkgs systemd"
    # make test-compose: a compose command and python3 (reads the CLI's JSON)
    command -v python3 >/dev/null || pkgs="$pkgs python3"
    if command -v docker >/dev/null && ! command -v docker-compose >/dev/null \
        && ! docker compose version >/dev/null 2>&1; then
        pkgs="$pkgs docker-compose"
    fi
fi
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends $pkgs
