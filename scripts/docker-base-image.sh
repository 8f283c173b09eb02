#!/usr/bin/env bash
# Builds the base image debian:bookworm-slim locally, for machines that
# cannot pull from an image registry. Elsewhere users simply pull it; the
# Dockerfile is the same either way.
#
#   scripts/docker-base-image.sh            build it unless the tag exists
#   scripts/docker-base-image.sh --force    rebuild and re-tag
#
# How: debootstrap --variant=minbase bookworm (Debian's own packages from the
# mirror), trimmed the way the official slim image is (no docs, man pages or
# locales; apt lists and caches emptied), then `docker import`. Any existing
# debian:bookworm-slim is kept as is, pulled or built: building it takes
# minutes, checking for it takes milliseconds.
#
# Environment:
#   DEBIAN_MIRROR           default http://deb.debian.org/debian
#   DEBIAN_SECURITY_MIRROR  default http://deb.debian.org/debian-security
#   BASE_IMAGE              default debian:bookworm-slim
#   http_proxy              passed to debootstrap when set (never stored in
#                           the image)
# Needs root (debootstrap creates device nodes and chroots); uses sudo
# when not root.
set -euo pipefail

image=${BASE_IMAGE:-debian:bookworm-slim}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
force=0
[ "${1:-}" = --force ] && force=1

if [ $force -eq 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
    echo "base image $image present; not rebuilding"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
if ! command -v debootstrap >/dev/null 2>&1; then
    echo "debootstrap missing; installing it" >&2
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
fi

# debootstrap downloads through $http_proxy; take apt's proxy when the
# host's apt has one and the environment does not.
if [ -z "${http_proxy:-}" ] && command -v apt-config >/dev/null; then
    apt_proxy=$(apt-config dump --format '%v%n' Acquire::http::Proxy 2>/dev/null | head -n 1)
    case "$apt_proxy" in http://*|https://*) export http_proxy=$apt_proxy ;; esac
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/ztask-rootfs.XXXXXX")
# The rootfs belongs to root once debootstrap has run; remove it the same way.
trap '"${sudo[@]}" rm -rf --one-file-system "$root"' EXIT

start=$(date +%s)
echo "debootstrap bookworm from $mirror into $root"
"${sudo[@]}" env ${http_proxy:+http_proxy="$http_proxy"} debootstrap --variant=minbase --arch="$(dpkg --print-architecture)" bookworm "$root" "$mirror" \
    >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# The same sources the official image ships: deb822 file, updates and
# security suites. The Dockerfile's apt-get update reads these.
"${sudo[@]}" rm -f "$root/etc/apt/sources.list"
"${sudo[@]}" tee "$root/etc/apt/sources.list.d/debian.sources" >/dev/null <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# What makes the official image "slim": dpkg skips docs, man pages and
# locales, and apt never keeps downloaded .debs.
"${sudo[@]}" tee "$root/etc/dpkg/dpkg.cfg.d/docker" >/dev/null <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
"${sudo[@]}" tee "$root/etc/apt/apt.conf.d/docker-clean" >/dev/null <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
"${sudo[@]}" tee "$root/etc/apt/apt.conf.d/docker-no-languages" >/dev/null <<'EOF'
Acquire::Languages "none";
EOF
# Drop what the build host left behind: package lists, caches, docs
# installed before the excludes existed, the machine id, logs.
"${sudo[@]}" sh -c "
    rm -rf '$root'/var/lib/apt/lists/* '$root'/var/cache/apt/*.bin \
           '$root'/var/cache/apt/archives/*.deb '$root'/var/log/*.log \
           '$root'/usr/share/man/* '$root'/usr/share/info/* \
           '$root'/usr/share/locale/* '$root'/tmp/* '$root'/var/tmp/*
    find '$root'/usr/share/doc -mindepth 2 -not -name copyright -not -type d -delete
    find '$root'/usr/share/doc -mindepth 1 -type d -empty -delete
    : > '$root'/etc/machine-id
    : > '$root'/etc/resolv.conf
"

# docker sets CMD/ENV on import; the official image has CMD ["bash"].
"${sudo[@]}" tar --numeric-owner --xattrs -C "$root" -c . |
    docker import \
        --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --message "debootstrap --variant=minbase bookworm $mirror" \
        - "$image" >/dev/null

echo "built $image in $(( $(date +%s) - start ))s: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"
