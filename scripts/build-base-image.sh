#!/usr/bin/env bash
# Builds a local stand-in for the official Python base image, for machines that can reach
# Debian's archive and PyPI but no container registry. The Dockerfiles take it through
# their PYTHON_IMAGE build argument; for everyone else they default to the official image.
#
#   scripts/build-base-image.sh [--force] [TAG]
#
# Needs root, a running Docker engine and Debian's archive (debootstrap is installed
# from it if missing). Reuses TAG if it already exists, unless --force is given.
set -euo pipefail

force=0
if [[ "${1:-}" == "--force" ]]; then
    force=1
    shift
fi
tag="${1:-alt-las/python-base:3.11-bookworm-local}"
suite=bookworm
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [[ $force -eq 0 ]] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag already exists; reusing it (--force rebuilds)"
    exit 0
fi

# A new machine of this project's kind has no debootstrap; Debian's archive has it.
if ! command -v debootstrap >/dev/null; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

rootfs="$(mktemp -d /tmp/alt-las-base.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

# minbase: essential packages and apt only. python3-venv brings ensurepip and the pip
# wheel that every `python3 -m venv` in the Dockerfiles relies on.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$rootfs" "$mirror"

cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SOURCES

# A property of this workplace, not of the project: outbound TLS passes through an egress
# proxy that re-signs certificates with its own CAs, kept in the host's
# /usr/local/share/ca-certificates. pip inside a build must trust them to reach PyPI.
# The official base image needs none of this elsewhere.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
fi
chroot "$rootfs" update-ca-certificates --fresh >/dev/null
# pip's own CA bundle (certifi) would ignore the system store: point it at the store.
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"

# Slim like the official image: no documentation, manual pages or translations, now or
# from packages installed later (copyright files stay, as the licences ask).
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKG
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*

# Leave no package caches or lists behind, as the official slim image does.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log

tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    --message "debootstrap $suite minbase + python3, python3-venv, ca-certificates" \
    - "$tag"
echo "built base image $tag"
