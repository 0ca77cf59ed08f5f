#!/usr/bin/env bash
# A second swarm node on this machine, for tests, CI and benchmarks: `second-node.sh up|down`.
#
# `up` makes a network namespace joined to the host by a veth pair (198.19.250.1 host side,
# 198.19.250.2 node side: 198.18.0.0/15 only), starts a second dockerd inside it with its own
# --data-root, --exec-root, socket and pidfile, joins it to this engine's swarm as a worker labelled
# quantmesh.region=$QM_NODE2_REGION, and loads the engine image(s) into it (docker save | docker load).
# `down` removes the node from the swarm and everything `up` made. Both are idempotent.
#
# The swarm manager advertises 127.0.0.1:2377, which a namespace cannot reach. Rather than
# re-initialising the shared swarm, the manager's port is relayed: socat on the host side of the veth
# (198.19.250.1:2377 -> 127.0.0.1:2377) and socat inside the namespace (127.0.0.1:2377 ->
# 198.19.250.1:2377), so the manager address the swarm hands its workers works there too.
#
# Engines on this node use its host network and listen on 198.19.250.2 (the node's swarm address),
# which the portal reaches through the veth (deploy/SCALING.md, "Network").
set -euo pipefail
export PATH="/usr/bin:/usr/sbin:$PATH"

NAME="${QM_NODE2_NAME:-qm-node2}"
REGION="${QM_NODE2_REGION:-b}"
MANAGER_REGION="${QM_MANAGER_REGION:-a}"
IMAGES="${QM_NODE2_IMAGES:-${QM_ENGINE_IMAGE:-quantmesh/engine:latest}}"
ROOT="/var/lib/$NAME"
RUN="/run/$NAME"
SOCKET="$RUN/docker.sock"
HOST_IP=198.19.250.1
NODE_IP=198.19.250.2
HOST_VETH="${NAME: -8}-h"
NODE_VETH="${NAME: -8}-n"
node2() { docker -H "unix://$SOCKET" "$@"; }
in_ns() { ip netns exec "$NAME" "$@"; }

start_relay() { # pidfile, then socat's arguments
  local pidfile="$1"; shift
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return; fi
  nohup "$@" >/dev/null 2>&1 &
  echo $! >"$pidfile"
}

stop_pidfile() {
  local pidfile="$1"
  [ -f "$pidfile" ] || return 0
  local pid; pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

up() {
  mkdir -p "$ROOT" "$RUN"
  if ! ip netns list | grep -qw "$NAME"; then ip netns add "$NAME"; fi
  if ! ip link show "$HOST_VETH" >/dev/null 2>&1; then
    ip link add "$HOST_VETH" type veth peer name "$NODE_VETH"
    ip link set "$NODE_VETH" netns "$NAME"
    ip addr add "$HOST_IP/30" dev "$HOST_VETH"
    ip link set "$HOST_VETH" up
    in_ns ip addr add "$NODE_IP/30" dev "$NODE_VETH"
    in_ns ip link set "$NODE_VETH" up
    in_ns ip link set lo up
    # No default route: the node reaches only the host (nothing outside 198.18.0.0/15), and an image
    # pull fails at once instead of waiting on DNS.
  fi

  start_relay "$RUN/relay-host.pid" socat "TCP-LISTEN:2377,bind=$HOST_IP,fork,reuseaddr" TCP:127.0.0.1:2377
  start_relay "$RUN/relay-node.pid" ip netns exec "$NAME" \
    socat TCP-LISTEN:2377,bind=127.0.0.1,fork,reuseaddr "TCP:$HOST_IP:2377"

  if ! node2 info >/dev/null 2>&1; then
    # Its own hostname (UTS namespace) so that `docker node ls` tells the nodes apart; nsenter, not
    # `ip netns exec`, whose private /sys hides the cgroup filesystem dockerd needs.
    nohup nsenter --net="/run/netns/$NAME" unshare --uts sh -c "hostname $NAME && exec dockerd \
      --data-root $ROOT --exec-root $RUN/exec --pidfile $RUN/docker.pid \
      --host unix://$SOCKET --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
      --cgroup-parent=/$NAME" >"$RUN/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do node2 info >/dev/null 2>&1 && break; sleep 0.5; done
    node2 info >/dev/null || { tail -20 "$RUN/dockerd.log"; exit 1; }
  fi

  # Entries of this name that are not ready were left by an engine that was lost before `down` could
  # remove them (the manager's dockerd crashed): tests that look the node up by name would find them.
  docker node ls --filter "name=$NAME" --format '{{.ID}} {{.Status}}' | awk '$2 != "Ready" {print $1}' \
    | xargs -r docker node rm --force >/dev/null 2>&1 || true
  if [ "$(node2 info --format '{{.Swarm.LocalNodeState}}')" != "active" ]; then
    # Swarm would otherwise give the node's gateway bridge a 172.x subnet.
    if ! node2 network inspect docker_gwbridge >/dev/null 2>&1; then
      node2 network create --driver bridge --subnet 198.19.1.0/24 \
        --opt com.docker.network.bridge.name=docker_gwbridge \
        --opt com.docker.network.bridge.enable_icc=false \
        --opt com.docker.network.bridge.enable_ip_masquerade=false docker_gwbridge >/dev/null
    fi
    node2 swarm join --token "$(docker swarm join-token -q worker)" \
      --advertise-addr "$NODE_IP" --listen-addr "$NODE_IP:2377" 127.0.0.1:2377 >/dev/null
  fi
  local node_id manager_id
  node_id="$(node2 info --format '{{.Swarm.NodeID}}')"
  manager_id="$(docker info --format '{{.Swarm.NodeID}}')"
  for _ in $(seq 1 60); do
    [ "$(docker node inspect "$node_id" --format '{{.Status.State}}')" = ready ] && break; sleep 0.5
  done
  # The address the portal reaches its engines at (swarm saw it connect from the relay's 127.0.0.1).
  docker node update --label-add "quantmesh.region=$REGION" --label-add "quantmesh.address=$NODE_IP" \
    "$node_id" >/dev/null
  docker node update --label-add "quantmesh.region=$MANAGER_REGION" "$manager_id" >/dev/null

  for image in $IMAGES; do
    local id; id="$(docker image inspect --format '{{.Id}}' "$image")"
    if [ "$(node2 image inspect --format '{{.Id}}' "$image" 2>/dev/null)" != "$id" ]; then
      docker save "$image" | node2 load -q >/dev/null
    fi
  done
  echo "node $NAME ($node_id) region=$REGION at $NODE_IP, engine unix://$SOCKET, images: $IMAGES"
}

down() {
  local node_id=""
  if node2 info >/dev/null 2>&1; then
    node_id="$(node2 info --format '{{.Swarm.NodeID}}')"
    node2 swarm leave --force >/dev/null 2>&1 || true
  fi
  if [ -z "$node_id" ]; then
    node_id="$(docker node ls --filter "name=$NAME" --format '{{.ID}}' | head -1)"
  fi
  if [ -n "$node_id" ]; then
    docker node update --availability drain "$node_id" >/dev/null 2>&1 || true
    docker node rm --force "$node_id" >/dev/null 2>&1 || true
  fi
  docker node update --label-rm quantmesh.region "$(docker info --format '{{.Swarm.NodeID}}')" >/dev/null 2>&1 || true
  stop_pidfile "$RUN/docker.pid"
  stop_pidfile "$RUN/relay-node.pid"
  stop_pidfile "$RUN/relay-host.pid"
  ip link del "$HOST_VETH" 2>/dev/null || true
  ip netns del "$NAME" 2>/dev/null || true
  # Mounts the dead engine may leave (overlay2 layers, its netns files).
  grep -oE " ($ROOT|$RUN)[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$ROOT" "$RUN"
  echo "node $NAME removed"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
