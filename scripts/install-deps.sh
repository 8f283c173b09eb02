#!/bin/sh
# Installs the Debian 12 packages ztask needs to build and test.
# Runs apt-get as root, or through sudo when not root.
set -e
pkgs="build-essential libzmq3-dev libcjson-dev check libsqlite3-dev pkg-config"
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends $pkgs
