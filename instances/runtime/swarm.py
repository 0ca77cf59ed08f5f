"""The `swarm` backend (many servers): each instance is a Docker Swarm service with one replica.

The service carries the plan's limits and reservations, the engine's hardening (non-root user,
read-only root, no capabilities, init), a restart policy, placement constraints and labels, and
mounts the instance's named volume at /data. Stopping scales it to 0 replicas: the volume and the
service stay. Swarm decides where a task runs; its restart policy is "none" because the portal's
reconcile restarts crashed engines on every backend alike, with back-off, the recorded reason,
crash-loop detection and alerts (a restart by swarm would pass unseen).

Nodes and regions: a region is the set of nodes labelled `quantmesh.region=<region>`. Logs, live
logs, statistics, files and the engine's address are read from the engine of the node where the task
runs (`QM_SWARM_NODE_ENGINES` names each worker's Docker API; the manager's own is this client), not
through swarm's log stream, which lags by seconds and cannot give statistics or files.

Data and placement: a plain local volume lives on one node, so every instance is pinned
(`node.id==…`) to the node its volume was made on: in its region, the node with the fewest
instances (no region: the manager's own node). With shared volumes (a volume plugin, or NFS through
the `local` driver's options) the data follows the task and swarm places it on any node of its
region matching `QM_SWARM_CONSTRAINTS`. Files are written into and read out of the volume through a
container on the data's node: the task's own, or a short-lived helper that mounts the volume and is
never started.

A node that is down or drained leaves its pinned instances UNREACHABLE (with the node's name), never
"exited": nothing is restarted elsewhere or deleted, and they run again when it returns.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import random
import tarfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import NamedTuple

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from .base import BackendError, InstanceSpec, RuntimeBackend, RuntimeState, RuntimeStats, RuntimeStatus, free_port
from .containers import (
    ENGINE_PORT,
    ENGINE_UID,
    LABEL,
    CpuSampler,
    container_stats,
    data_volume_name,
    docker_time,
    engine_command,
    lines_of,
    put_files,
    read_data_file,
    unit_labels,
    unit_name,
    update_container_limits,
)
from .docker_api import service_update

SERVICE_ID_LABEL = "com.docker.swarm.service.id"
SWARM_KEYS_NAME = "quantmesh-keys"  # the run keys' Docker secret, at /run/secrets/<this> in the task
FILES_LABEL = "quantmesh.files-for"
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs"}
REGION_LABEL = "quantmesh.region"
ADDRESS_LABEL = "quantmesh.address"
NODE_PORTS = range(20000, 30000)  # engines' ports on a worker node (host networking)
PIN = "node.id=="
# Limits applied live to the running container; the task template follows at the next start.
CPU_LABEL, MEMORY_LABEL = "quantmesh.cpu-limit", "quantmesh.memory-mb"
LIVE = {"starting", "running"}  # a container exists and runs ("starting": its health check has not passed yet)
PENDING = {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready"}


def swarm_available() -> bool:
    try:
        return docker.from_env(timeout=5).info()["Swarm"].get("ControlAvailable", False)
    except (DockerException, OSError):
        return False


def _replicas(service: dict) -> int:
    return service["Spec"].get("Mode", {}).get("Replicated", {}).get("Replicas", 0)


def _created(task: dict) -> datetime:
    return docker_time(task["CreatedAt"])


def _task_error(task: dict, image: str) -> str:
    error = task["Status"].get("Err", "")
    if "No such image" in error:
        return f"image missing: {image} is not on node {task.get('NodeID', '?')}"
    return f"swarm could not run it: {error}" if error else ""


def pinned_node(service: dict) -> str | None:
    constraints = service["Spec"]["TaskTemplate"].get("Placement", {}).get("Constraints") or []
    return next((c.removeprefix(PIN) for c in constraints if c.startswith(PIN)), None)


def node_problem(node: dict | None) -> str:
    """Why a node cannot run tasks now, in words; "" when it can."""
    if node is None:
        return ""
    name = node.get("Description", {}).get("Hostname") or node["ID"]
    if node["Status"]["State"] != "ready":
        return f"node {name} is unreachable ({node['Status']['State']})"
    if node["Spec"].get("Availability") != "active":
        return f"node {name} is {node['Spec']['Availability']}ed and the instance's data is pinned there"
    return ""


def service_status(service: dict, tasks: list[dict], nodes: dict[str, dict] | None = None) -> RuntimeStatus:
    """What a service, its tasks and the nodes say about the instance (shared by status() and the listing)."""
    instance_id = service["Spec"]["Labels"][LABEL]
    image = service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    tasks = sorted(tasks, key=_created)
    if nodes is not None and _replicas(service) > 0:
        # Where the data is pinned, else where the newest task was: a node that cannot run it hides
        # what its engine does; the instance waits for it (it has not crashed).
        node_id = pinned_node(service) or (tasks[-1].get("NodeID") if tasks else None)
        problem = node_problem(nodes.get(node_id)) if node_id else ""
        if problem:
            return RuntimeStatus(instance_id, RuntimeState.UNREACHABLE, error=problem)
    live = [t for t in tasks if t["Status"]["State"] in LIVE and t.get("DesiredState") == "running"]
    if live:
        task = live[-1]
        state = task["Status"]["State"]
        return RuntimeStatus(
            instance_id,
            RuntimeState.RUNNING,
            started_at=docker_time(task["Status"].get("Timestamp")),
            # Swarm reports "running" only once the image's health check passed.
            healthy=True if state == "running" else None,
        )
    latest = tasks[-1] if tasks else None
    scaled_up = _replicas(service) > 0
    if latest is None:
        # Swarm is yet to start the replica; or it never ran; or it was stopped and its task is gone.
        stopped = not scaled_up and "PreviousSpec" in service
        return RuntimeStatus(instance_id, RuntimeState.EXITED if stopped else RuntimeState.CREATED)
    if scaled_up and latest["Status"]["State"] in PENDING:
        return RuntimeStatus(instance_id, RuntimeState.CREATED)  # swarm is yet to start the replica
    error = _task_error(latest, image) if latest["Status"]["State"] == "rejected" else ""
    return RuntimeStatus(
        instance_id,
        RuntimeState.EXITED,
        exit_code=latest["Status"].get("ContainerStatus", {}).get("ExitCode"),
        finished_at=docker_time(latest["Status"].get("Timestamp")),
        error=error,
    )


class _Placement(NamedTuple):
    """Where a service runs and how its engine listens there (what a move changes)."""

    constraints: list[str]
    region: str
    args: list[str]
    port: str


class SwarmBackend(RuntimeBackend):
    name = "swarm"

    def __init__(
        self,
        *,
        network: str = "host",
        client=None,
        stop_timeout: int = 10,
        volume_driver: str = "local",
        volume_options: dict[str, str] | None = None,
        constraints: list[str] | None = None,
        node_engines: dict[str, str] | None = None,
    ):
        self.client = client or docker.from_env(timeout=30)
        self.node_engines = node_engines or {}
        self._node_clients: dict[str, docker.DockerClient] = {}
        self.network = network
        self.stop_timeout = stop_timeout
        self.volume_driver = volume_driver
        self.volume_options = volume_options or {}
        self.constraints = list(constraints or [])
        self._cpu = CpuSampler()

    service_name = staticmethod(unit_name)
    volume_name = staticmethod(data_volume_name)

    # --- finding things -------------------------------------------------------------------

    def _service(self, instance_id: str):
        found = self.client.services.list(filters={"label": f"{LABEL}={instance_id}"})
        return found[0] if found else None

    def _get(self, instance_id: str):
        service = self._service(instance_id)
        if service is None:
            raise BackendError(f"{instance_id} has no service")
        return service

    def _tasks(self, service) -> list[dict]:
        return self.client.api.tasks(filters={"service": service.id})

    @functools.cached_property
    def own_node_id(self) -> str:
        return self.client.info()["Swarm"]["NodeID"]

    def node_client(self, node_id: str):
        """The Docker engine of a swarm node: this client for the manager's own node, else the address
        `QM_SWARM_NODE_ENGINES` gives for the node's hostname."""
        if node_id not in self._node_clients:
            if node_id == self.own_node_id:
                return self.client
            try:
                hostname = self.client.api.inspect_node(node_id)["Description"]["Hostname"]
            except NotFound:
                raise BackendError(f"node {node_id} is no longer in the swarm") from None
            address = self.node_engines.get(hostname)
            if address is None:
                raise BackendError(f"node {hostname} has no engine address (QM_SWARM_NODE_ENGINES)")
            self._node_clients[node_id] = docker.DockerClient(base_url=address, timeout=30)
        return self._node_clients[node_id]

    def _nodes(self) -> dict[str, dict]:
        return {node["ID"]: node for node in self.client.api.nodes()}

    def _unreachable(self, node_id: str) -> BackendError:
        return BackendError(node_problem(self._nodes().get(node_id)) or f"node {node_id} does not answer")

    def _container_on(self, node_id: str, container_id: str):
        try:
            return self.node_client(node_id).containers.get(container_id)
        except NotFound:
            return None
        except (requests.exceptions.ConnectionError, DockerException) as error:
            if isinstance(error, APIError):
                raise
            raise self._unreachable(node_id) from None

    def task_container(self, instance_id: str, service=None):
        """The running task's container, on the engine of the node it runs on."""
        service = service or self._service(instance_id)
        return self._task_container(service, running=True) if service else None

    def _task_container(self, service, *, running: bool):
        """The container of the service's newest task (newest running one, if `running`)."""
        for task in sorted(self._tasks(service), key=_created, reverse=True):
            container_id = task["Status"].get("ContainerStatus", {}).get("ContainerID")
            if not container_id or (running and task["Status"]["State"] not in LIVE):
                continue
            return self._container_on(task["NodeID"], container_id)
        return None

    def data_node(self, service) -> str:
        """The node whose disk holds the instance's volume (for shared volumes: where it last ran)."""
        pinned = pinned_node(service.attrs)
        if pinned:
            return pinned
        tasks = sorted(self._tasks(service), key=_created)
        return tasks[-1]["NodeID"] if tasks else self.own_node_id

    def _update(self, service, change) -> None:
        """Apply `change` to a copy of the service's spec, as `docker service update` does."""
        service.reload()
        spec = copy.deepcopy(service.attrs["Spec"])
        change(spec)
        service_update(self.client, service.id, service.version, spec)

    # --- lifecycle ------------------------------------------------------------------------

    def ensure_unit(self, spec: InstanceSpec) -> None:
        if self._service(spec.instance_id) is None:
            node_id = self._pick_node(spec.region)
            self._ensure_volume(spec.instance_id, node_id)
            self._create_service(spec, node_id, self._run_keys_secret(spec))

    def _region_nodes(self, region: str) -> list[dict]:
        nodes = [n for n in self._nodes().values() if not node_problem(n)]
        if region:
            nodes = [n for n in nodes if n["Spec"].get("Labels", {}).get(REGION_LABEL) == region]
        return nodes

    def _pick_node(self, region: str, *, avoid: str | None = None) -> str:
        """The node a new instance's data goes on: without a region, the manager's own node; in a
        region, its ready node with the fewest instances pinned to it."""
        if not region:
            return self.own_node_id
        candidates = [n["ID"] for n in self._region_nodes(region) if n["ID"] != avoid]
        if not candidates:
            raise BackendError(f"region {region} has no node ready to run instances")
        services = self.client.api.services(filters={"label": LABEL})
        load = {node_id: 0 for node_id in candidates}
        for service in services:
            pinned = pinned_node(service)
            if pinned in load:
                load[pinned] += 1
        return min(candidates, key=lambda node_id: (load[node_id], node_id))

    def _ensure_volume(self, instance_id: str, node_id: str) -> None:
        client = self.node_client(node_id)
        try:
            client.volumes.get(self.volume_name(instance_id))
        except NotFound:
            client.volumes.create(
                self.volume_name(instance_id),
                driver=self.volume_driver,
                driver_opts=self.volume_options or None,
                labels={LABEL: instance_id},
            )

    @property
    def volumes_shared(self) -> bool:
        """Whether every node reaches the same volume: a volume plugin, or NFS/CIFS through `local`."""
        return self.volume_driver != "local" or self.volume_options.get("type") in NETWORK_FILESYSTEMS

    def placement_constraints(self, node_id: str, region: str = "") -> list[str]:
        """The service's placement constraints for data made on `node_id` in `region`."""
        regional = [f"node.labels.{REGION_LABEL}=={region}"] if region else []
        if self.volumes_shared:
            return [*regional, *self.constraints]
        # The data is on that node's disk: the instance stays on that node.
        return [f"{PIN}{node_id}", *regional, *self.constraints]

    def _run_keys_secret(self, spec: InstanceSpec) -> docker.types.SecretReference:
        """The run keys as a Docker secret (kept encrypted in the swarm's raft log, mounted on a tmpfs
        in the task's container, readable by the engine's user only). Its content never changes for
        an instance, so an existing one is reused."""
        name = f"qm-keys-{spec.instance_id}"
        found = self.client.secrets.list(filters={"name": name})
        secret = next((s for s in found if s.name == name), None)
        if secret is None:
            try:
                secret = self.client.secrets.create(name=name, data=spec.run_keys, labels={LABEL: spec.instance_id})
            except APIError as error:
                if error.status_code != 409:  # a concurrent create made it: use that one
                    raise BackendError(f"swarm refused to store the run keys: {error.explanation}") from None
                secret = next(s for s in self.client.secrets.list(filters={"name": name}) if s.name == name)
        uid = str(ENGINE_UID)
        return docker.types.SecretReference(secret.id, name, filename=SWARM_KEYS_NAME, uid=uid, gid=uid, mode=0o400)

    def _remove_run_keys_secret(self, instance_id: str) -> None:
        for secret in self.client.secrets.list(filters={"label": f"{LABEL}={instance_id}"}):
            with contextlib.suppress(NotFound, APIError):
                secret.remove()

    def _create_service(self, spec: InstanceSpec, node_id: str, keys: docker.types.SecretReference) -> None:
        host_network = self.network == "host"
        port, listen = self._node_port(node_id) if host_network else (ENGINE_PORT, "")
        memory = spec.memory_limit_mb * 1024 * 1024
        resources = docker.types.Resources(
            cpu_limit=int(spec.cpu_limit * 1e9),
            mem_limit=memory,
            # Reserve a quarter of the plan so that swarm does not pack more onto a node than it can hold.
            cpu_reservation=int(spec.cpu_limit * 1e9 / 4),
            mem_reservation=memory // 4,
        )
        resources["Limits"]["Pids"] = spec.pids_limit
        volume = docker.types.Mount(
            "/data",
            self.volume_name(spec.instance_id),
            type="volume",
            driver_config=docker.types.DriverConfig(self.volume_driver, self.volume_options or None),
            labels={LABEL: spec.instance_id},
        )
        tmp = docker.types.Mount("/tmp", None, type="tmpfs", tmpfs_size=16 * 1024 * 1024)  # noqa: S108
        try:
            self.client.services.create(
                spec.image,
                args=engine_command(
                    host_network=host_network, port=port, keys_file=f"/run/secrets/{SWARM_KEYS_NAME}", listen=listen
                ),
                secrets=[keys],
                name=self.service_name(spec.instance_id),
                labels={**unit_labels(spec, port), REGION_LABEL: spec.region},
                container_labels={"quantmesh.service-of": spec.instance_id, "quantmesh.owner": str(spec.owner_id)},
                mode=docker.types.ServiceMode("replicated", replicas=0),
                resources=resources,
                restart_policy=docker.types.RestartPolicy(condition="none"),
                constraints=self.placement_constraints(node_id, spec.region),
                networks=[self.network],
                mounts=[volume, tmp],
                user=f"{ENGINE_UID}:{ENGINE_UID}",
                read_only=True,
                init=True,
                cap_drop=["ALL"],
                stop_signal="SIGTERM",
                stop_grace_period=self.stop_timeout * 1_000_000_000,
                log_driver="json-file",
                log_driver_options={"max-size": "10m", "max-file": "3"},
            )
        except APIError as error:
            if error.status_code == 409:  # a concurrent create won the name: use that service
                return
            raise BackendError(f"swarm refused to create the service: {error.explanation}") from None

    def _node_port(self, node_id: str) -> tuple[int, str]:
        """Host networking: where the engine listens, on the node's swarm address (the private network
        the nodes share; loopback on a one-node swarm), at a port no other instance on it uses. With
        shared volumes the node is not known in advance: it listens on every address of its node."""
        if node_id == self.own_node_id:
            port = free_port()
        else:
            services = self.client.api.services(filters={"label": LABEL})
            taken = {int(s["Spec"]["Labels"]["quantmesh.port"]) for s in services if pinned_node(s) == node_id}
            # At random among the free ones: two creates at once rarely pick the same port.
            port = random.choice([p for p in NODE_PORTS if p not in taken])  # noqa: S311
        if self.volumes_shared:
            return port, "0.0.0.0"  # noqa: S104 (nodes firewalled: deploy/SCALING.md)
        return port, self._node_address(node_id)

    def _node_address(self, node_id: str) -> str:
        """The node's address on the nodes' private network: its `quantmesh.address` label, else the
        address swarm saw it connect from."""
        node = self.client.api.inspect_node(node_id)
        return node["Spec"].get("Labels", {}).get(ADDRESS_LABEL) or node["Status"]["Addr"]

    def write_files(self, instance_id: str, files: dict[str, bytes]) -> None:
        if not files:
            return
        container = self.task_container(instance_id)
        if container is not None:
            put_files(container, files)
            return
        with self._volume_helper(instance_id) as helper:
            put_files(helper, files)

    @contextlib.contextmanager
    def _volume_helper(self, instance_id: str, node_id: str | None = None):
        """A container on the data's node that mounts the instance's volume and is never started
        (docker cp works on it)."""
        service = self._get(instance_id)
        image = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        node_id = node_id or self.data_node(service)
        self._ensure_volume(instance_id, node_id)
        client = self.node_client(node_id)
        try:
            helper = client.containers.create(
                image,
                command=["true"],
                labels={FILES_LABEL: instance_id},
                network_mode="none",
                volumes={self.volume_name(instance_id): {"bind": "/data", "mode": "rw"}},
            )
        except ImageNotFound:
            raise BackendError(f"image missing: {image} is not on node {node_id}") from None
        try:
            yield helper
        finally:
            helper.remove(force=True)

    def read_file(self, instance_id: str, name: str) -> bytes | None:
        container = self.task_container(instance_id)
        if container is not None:
            return read_data_file(container, name)
        with self._volume_helper(instance_id) as helper:
            return read_data_file(helper, name)

    def start(self, instance_id: str) -> None:
        service = self._get(instance_id)

        def scale_up(spec: dict) -> None:
            spec["Mode"]["Replicated"]["Replicas"] = 1
            _template_limits(spec)
            # A new task even where the slot still holds a finished one (crashed, or stopped a moment
            # ago): with restart condition "none" swarm would count that one as the replica.
            self._bump_force_update(spec)

        self._replace_task(service, scale_up)

    @staticmethod
    def _bump_force_update(spec: dict) -> None:
        template = spec["TaskTemplate"]
        template["ForceUpdate"] = template.get("ForceUpdate", 0) + 1

    def stop(self, instance_id: str, timeout: int) -> None:
        service = self._service(instance_id)
        if service is None:
            return
        if _replicas(service.attrs) != 0:

            def scale_down(spec: dict) -> None:
                spec["Mode"]["Replicated"]["Replicas"] = 0
                spec["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] = timeout * 1_000_000_000

            self._update(service, scale_down)
        # Like `docker stop`: return once the engine has stopped (SIGKILL follows the grace period).
        deadline = time.monotonic() + timeout + 15
        while time.monotonic() < deadline:
            if not any(t["Status"]["State"] in LIVE | PENDING for t in self._tasks(service)):
                return
            time.sleep(0.2)
        raise BackendError(f"{instance_id} did not stop within {timeout + 15} s")

    def restart(self, instance_id: str) -> None:
        service = self._get(instance_id)

        def renew(spec: dict) -> None:
            _template_limits(spec)
            self._bump_force_update(spec)

        self._replace_task(service, renew)

    def _replace_task(self, service, change) -> None:
        """Update the spec, which makes swarm start a new task (stopping the old one first), and return
        once the new task's container runs or has failed, as `docker start` and `restart` do."""
        before = {t["ID"] for t in self._tasks(service)}
        self._update(service, change)
        deadline = time.monotonic() + self.stop_timeout + 30
        while time.monotonic() < deadline:
            fresh = [t for t in self._tasks(service) if t["ID"] not in before]
            if any(t["Status"]["State"] in LIVE | {"failed", "rejected", "complete"} for t in fresh):
                return
            time.sleep(0.2)

    def remove(self, instance_id: str, keep_data: bool = True) -> None:
        service = self._service(instance_id)
        node_id = self.own_node_id
        if service is not None:
            node_id = self.data_node(service)
            service_id = service.id
            service.remove()
            # The agent removes the task containers a moment later; do it now, so the volume is free.
            self._remove_containers(node_id, {"label": f"{SERVICE_ID_LABEL}={service_id}"})
        self._remove_run_keys_secret(instance_id)
        if not keep_data:
            self._remove_volume(instance_id, node_id)
        self._cpu.forget(instance_id)

    def _remove_containers(self, node_id: str, filters: dict) -> None:
        with contextlib.suppress(BackendError):  # its node is gone: swarm removes them when it returns
            for container in self.node_client(node_id).containers.list(all=True, filters=filters):
                with contextlib.suppress(NotFound, APIError):  # the agent may be removing it too
                    container.remove(force=True)

    def _remove_volume(self, instance_id: str, node_id: str) -> None:
        volumes = self.node_client(node_id).volumes
        deadline = time.monotonic() + 15
        while True:
            try:
                volumes.get(self.volume_name(instance_id)).remove(force=True)
                return
            except NotFound:
                return
            except APIError:  # still in use by a task container the agent is removing
                self._remove_containers(node_id, {"volume": self.volume_name(instance_id)})
                if time.monotonic() > deadline:
                    raise BackendError(f"the data volume of {instance_id} is still in use") from None
                time.sleep(0.2)

    # --- moving between nodes -------------------------------------------------------------

    def move(self, instance_id: str, region: str, ready: Callable[[], str | None] | None = None) -> None:
        """Stop the engine (its data is then consistent), copy the volume to a node of `region`,
        re-pin the same service there and start it; the old copy is removed only once the new task
        runs and `ready` (if given) reports no problem. Any failure puts the service back on its old
        node, with its untouched volume, running as before. Shared volumes need no copy: the
        constraint changes and swarm moves the task."""
        service = self._get(instance_id)
        source = self.data_node(service)
        was_running = _replicas(service.attrs) > 0
        target = self._pick_node(region, avoid=source)
        spec = service.attrs["Spec"]
        here = _Placement(
            constraints=spec["TaskTemplate"].get("Placement", {}).get("Constraints") or [],
            region=spec["Labels"].get(REGION_LABEL, ""),
            args=spec["TaskTemplate"]["ContainerSpec"]["Args"],
            port=spec["Labels"]["quantmesh.port"],
        )
        if self.network == "host":  # the engine listens on the target node's address
            port, listen = self._node_port(target)
            there = _Placement(
                constraints=self.placement_constraints(target, region),
                region=region,
                args=engine_command(
                    host_network=True, port=port, keys_file=f"/run/secrets/{SWARM_KEYS_NAME}", listen=listen
                ),
                port=str(port),
            )
        else:
            there = _Placement(self.placement_constraints(target, region), region, here.args, here.port)
        self.stop(instance_id, timeout=self.stop_timeout)
        try:
            if not self.volumes_shared:
                self._copy_volume(instance_id, source, target)
            self._place(service, there, running=True)
            status = self.status(instance_id)
            if status.state != RuntimeState.RUNNING:
                raise BackendError(f"it did not start in region {region}: {status.error or status.state.value}")
            problem = ready() if ready else None  # e.g. the engine answers its health check
            if problem:
                raise BackendError(f"it did not come up in region {region}: {problem}")
        except Exception as error:
            self._place(service, here, running=was_running)
            if not self.volumes_shared:
                with contextlib.suppress(BackendError, APIError):
                    self._remove_volume(instance_id, target)
            if isinstance(error, BackendError):
                raise
            raise BackendError(f"the move to region {region} failed: {error}") from error
        if not self.volumes_shared:
            self._remove_volume(instance_id, source)
        if not was_running:
            self.stop(instance_id, timeout=self.stop_timeout)

    def _copy_volume(self, instance_id: str, source: str, target: str) -> None:
        with self._volume_helper(instance_id, source) as old:
            chunks, _ = old.get_archive("/data")
            archive = b"".join(chunks)
        with self._volume_helper(instance_id, target) as new:
            new.put_archive("/data", _strip_top(archive))

    def _place(self, service, placement: _Placement, *, running: bool) -> None:
        def placed(spec: dict) -> None:
            spec["TaskTemplate"].setdefault("Placement", {})["Constraints"] = placement.constraints
            spec["TaskTemplate"]["ContainerSpec"]["Args"] = placement.args
            spec["Labels"].update({REGION_LABEL: placement.region, "quantmesh.port": placement.port})
            spec["Mode"]["Replicated"]["Replicas"] = 1 if running else 0
            self._bump_force_update(spec)

        self._replace_task(service, placed) if running else self._update(service, placed)

    # --- observation ----------------------------------------------------------------------

    def status(self, instance_id: str) -> RuntimeStatus:
        service = self._service(instance_id)
        if service is None:
            return RuntimeStatus(instance_id, RuntimeState.MISSING)
        return service_status(service.attrs, self._tasks(service), self._nodes())

    def list_all(self) -> dict[str, RuntimeStatus]:
        """Three calls whatever the count: the services, every task of the swarm, the nodes."""
        services = self.client.api.services(filters={"label": LABEL})
        by_service: dict[str, list[dict]] = {s["ID"]: [] for s in services}
        for task in self.client.api.tasks():
            if task.get("ServiceID") in by_service:
                by_service[task["ServiceID"]].append(task)
        nodes = self._nodes()
        return {s["Spec"]["Labels"][LABEL]: service_status(s, by_service[s["ID"]], nodes) for s in services}

    # Read from the engine of the task's node: swarm's own log stream (`docker service logs`)
    # reports new lines only after several seconds.
    def logs(self, instance_id: str, tail: int) -> list[str]:
        service = self._service(instance_id)
        if service is None:
            return []
        container = self._task_container(service, running=False)
        return container.logs(tail=tail).decode("utf-8", "replace").splitlines() if container else []

    def follow_logs(self, instance_id: str, since: datetime | None = None) -> Iterator[str]:
        container = self.task_container(instance_id, self._get(instance_id))
        if container is None:
            return
        yield from lines_of(container.logs(stream=True, follow=True, since=since or datetime.now().astimezone()))

    def stats(self, instance_id: str) -> RuntimeStats:
        container = self.task_container(instance_id, self._get(instance_id))
        if container is None:
            raise BackendError(f"{instance_id} is not running")
        return container_stats(container, instance_id, self._cpu)

    def update_limits(self, instance_id: str, cpu_limit: float, memory_limit_mb: int) -> None:
        """Applied to the running container in place (no restart). The service's labels keep the
        limits and its task template takes them at the next start or restart: changing the template
        of a running service would make swarm replace its task (a restart)."""
        service = self._get(instance_id)

        def label(spec: dict) -> None:
            spec["Labels"].update({CPU_LABEL: str(cpu_limit), MEMORY_LABEL: str(memory_limit_mb)})
            if spec["Mode"]["Replicated"]["Replicas"] == 0:
                _template_limits(spec)  # applies when it next starts

        try:
            container = self.task_container(instance_id, service)
            if container is not None:
                update_container_limits(container.client, container, cpu_limit, memory_limit_mb)
            self._update(service, label)
        except APIError as error:
            raise BackendError(f"docker refused the new limits: {error.explanation}") from None

    def endpoint(self, instance_id: str) -> tuple[str, int]:
        service = self._get(instance_id)
        if self.network != "host":
            return self.service_name(instance_id), ENGINE_PORT  # swarm's DNS on the shared overlay network
        # The engine listens on its node's swarm address (deploy/SCALING.md, "Network").
        running = [t for t in self._tasks(service) if t["Status"]["State"] in LIVE]
        node_id = running[-1]["NodeID"] if running else self.data_node(service)
        return self._node_address(node_id), int(service.attrs["Spec"]["Labels"]["quantmesh.port"])


def _template_limits(spec: dict) -> None:
    """Copy the limits the labels hold into the task template (with the quarter reservations)."""
    labels = spec["Labels"]
    if CPU_LABEL not in labels:
        return
    nano_cpus, memory = int(float(labels[CPU_LABEL]) * 1e9), int(labels[MEMORY_LABEL]) * 1024 * 1024
    resources = spec["TaskTemplate"].setdefault("Resources", {})
    resources.setdefault("Limits", {}).update(NanoCPUs=nano_cpus, MemoryBytes=memory)
    resources.setdefault("Reservations", {}).update(NanoCPUs=nano_cpus // 4, MemoryBytes=memory // 4)


def _strip_top(archive: bytes) -> bytes:
    """`get_archive("/data")` puts everything under "data/": re-root it for put_archive("/data")."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(archive)) as source, tarfile.open(fileobj=out, mode="w") as target:
        for member in source.getmembers():
            name = member.name.removeprefix("data").lstrip("/")
            if not name:
                continue
            member.name = name
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
    return out.getvalue()
