#!/usr/bin/env bash
# Make this Docker engine a one-node swarm for the `swarm` runtime backend (tests, a laptop).
# Address spaces: the swarm's overlay pool and docker_gwbridge are placed in 198.18.0.0/15 (the
# benchmarking range), never in 10.x, 172.16-31.x or 192.168.x; instances use host networking on
# loopback, so neither network carries their traffic. Idempotent.
set -euo pipefail
export PATH="/usr/bin:$PATH"

state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
if [ "$state" != "active" ]; then
  if ! docker network inspect docker_gwbridge >/dev/null 2>&1; then
    docker network create --driver bridge --subnet 198.19.0.0/24 \
      --opt com.docker.network.bridge.name=docker_gwbridge \
      --opt com.docker.network.bridge.enable_icc=false \
      --opt com.docker.network.bridge.enable_ip_masquerade=false \
      docker_gwbridge >/dev/null
  fi
  docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 \
    --default-addr-pool 198.18.0.0/16 --default-addr-pool-mask-length 24 \
    --task-history-limit 5 >/dev/null
fi
# No routing mesh: instances publish no ports.
if docker network inspect ingress >/dev/null 2>&1; then
  docker network rm ingress >/dev/null <<<"y" || true
fi
docker info --format 'swarm {{.Swarm.LocalNodeState}} (node {{.Swarm.NodeID}})'
