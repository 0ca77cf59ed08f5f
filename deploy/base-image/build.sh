#!/usr/bin/env bash
# Build quantmesh/base:bookworm (Debian bookworm with python3) offline from Debian packages,
# since Docker Hub is out of reach. Cached: skipped when the image exists; the rootfs tarball is
# kept in /var/cache/quantmesh so a wiped Docker store re-imports it in seconds.
set -euo pipefail
export PATH="/usr/bin:$PATH"
IMAGE=quantmesh/base:bookworm
CACHE=/var/cache/quantmesh
TARBALL=$CACHE/base-bookworm.tar
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE present"; exit 0
fi
mkdir -p "$CACHE"
if [ ! -s "$TARBALL" ]; then
  command -v debootstrap >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$MIRROR" >/dev/null
  rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/lib/apt/lists/*
  tar -C "$root" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
fi
docker import "$TARBALL" "$IMAGE" >/dev/null
echo "$IMAGE built"
