#!/usr/bin/env bash
# Make sure a Docker engine answers: install Debian's docker.io if needed and start dockerd.
# No default bridge (its 172.17.x network is off limits here): containers use host networking
# on loopback ports or no network at all; image builds use --network=host.
set -euo pipefail

if ! command -v dockerd >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
# Debian's client, not an older one earlier on PATH.
export PATH="/usr/bin:$PATH"

if ! docker info >/dev/null 2>&1; then
  mkdir -p /etc/docker
  nohup dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
docker info --format 'docker {{.ServerVersion}} ({{.Driver}})'
