"""The `swarm` backend (many servers): each instance is a Docker Swarm service with one replica.

The service carries the plan's limits and reservations, the engine's hardening (non-root user,
read-only root, no capabilities, init), a restart policy, placement constraints and labels, and
mounts the instance's named volume at /data. Stopping scales it to 0 replicas: the volume and the
service stay. Swarm decides where a task runs; its restart policy is "none" because the portal's
reconcile restarts crashed engines on every backend alike, with back-off, the recorded reason,
crash-loop detection and alerts (a restart by swarm would pass unseen).

Data and placement: a plain local volume lives on one node, so every instance is pinned
(`node.id==…`) to the node of the engine this backend talks to, where its volume is. With shared
volumes (a volume plugin, or NFS through the `local` driver's options) the data follows the task
and instances spread over every node matching `QM_SWARM_CONSTRAINTS`. Files are written into and read out of
the volume through a container on this backend's engine: the task's own when it runs here, or a
short-lived helper that mounts the volume and is never started.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from datetime import datetime

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from .base import BackendError, InstanceSpec, RuntimeBackend, RuntimeState, RuntimeStats, RuntimeStatus
from .docker import (
    ENGINE_PORT,
    ENGINE_UID,
    LABEL,
    CpuSampler,
    container_stats,
    data_volume_name,
    docker_time,
    engine_command,
    free_port,
    lines_of,
    put_files,
    read_data_file,
    unit_labels,
    unit_name,
)

SERVICE_ID_LABEL = "com.docker.swarm.service.id"
SWARM_KEYS_NAME = "quantmesh-keys"  # the run keys' Docker secret, at /run/secrets/<this> in the task
FILES_LABEL = "quantmesh.files-for"
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs"}
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


def service_status(service: dict, tasks: list[dict]) -> RuntimeStatus:
    """What a service and its tasks say about the instance (shared by status() and the listing)."""
    instance_id = service["Spec"]["Labels"][LABEL]
    image = service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    tasks = sorted(tasks, key=_created)
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
    ):
        self.client = client or docker.from_env(timeout=30)
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

    def task_container(self, instance_id: str, service=None):
        """The running task's container when it runs on this backend's engine."""
        service = service or self._service(instance_id)
        return self._local_container(service, running=True) if service else None

    def _local_container(self, service, *, running: bool):
        """The container of the service's newest task (newest running one, if `running`), when that
        task is on this backend's engine."""
        for task in sorted(self._tasks(service), key=_created, reverse=True):
            container_id = task["Status"].get("ContainerStatus", {}).get("ContainerID")
            if not container_id or (running and task["Status"]["State"] not in LIVE):
                continue
            try:
                return self.client.containers.get(container_id)
            except NotFound:
                return None  # it runs on another node
        return None

    def _update(self, service, change) -> None:
        """Apply `change` to a copy of the service's spec, as `docker service update` does."""
        service.reload()
        spec = copy.deepcopy(service.attrs["Spec"])
        change(spec)
        api = self.client.api
        response = api._post_json(
            api._url("/services/{0}/update", service.id), params={"version": service.version}, data=spec
        )
        api._raise_for_status(response)

    # --- lifecycle ------------------------------------------------------------------------

    def create(self, spec: InstanceSpec) -> None:
        if self._service(spec.instance_id) is None:
            self._ensure_volume(spec.instance_id)
            self._create_service(spec, self._run_keys_secret(spec))
        self._put_files(spec.instance_id, spec.files)

    def _ensure_volume(self, instance_id: str) -> None:
        try:
            self.client.volumes.get(self.volume_name(instance_id))
        except NotFound:
            self.client.volumes.create(
                self.volume_name(instance_id),
                driver=self.volume_driver,
                driver_opts=self.volume_options or None,
                labels={LABEL: instance_id},
            )

    @property
    def volumes_shared(self) -> bool:
        """Whether every node reaches the same volume: a volume plugin, or NFS/CIFS through `local`."""
        return self.volume_driver != "local" or self.volume_options.get("type") in NETWORK_FILESYSTEMS

    def _placement(self) -> list[str]:
        if self.volumes_shared:
            return self.constraints
        # The data is on this node's disk: the instance stays on this node.
        return [f"node.id=={self.client.info()['Swarm']['NodeID']}", *self.constraints]

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

    def _create_service(self, spec: InstanceSpec, keys: docker.types.SecretReference) -> None:
        host_network = self.network == "host"
        port = free_port() if host_network else ENGINE_PORT
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
                    host_network=host_network, port=port, keys_file=f"/run/secrets/{SWARM_KEYS_NAME}"
                ),
                secrets=[keys],
                name=self.service_name(spec.instance_id),
                labels=unit_labels(spec, port),
                container_labels={"quantmesh.service-of": spec.instance_id, "quantmesh.owner": str(spec.owner_id)},
                mode=docker.types.ServiceMode("replicated", replicas=0),
                resources=resources,
                restart_policy=docker.types.RestartPolicy(condition="none"),
                constraints=self._placement(),
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

    def _put_files(self, instance_id: str, files: dict[str, bytes]) -> None:
        if not files:
            return
        container = self.task_container(instance_id)
        if container is not None:
            put_files(container, files)
            return
        with self._volume_helper(instance_id) as helper:
            put_files(helper, files)

    @contextlib.contextmanager
    def _volume_helper(self, instance_id: str):
        """A container that mounts the instance's volume and is never started (docker cp works on it)."""
        image = self._get(instance_id).attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        self._ensure_volume(instance_id)
        try:
            helper = self.client.containers.create(
                image,
                command=["true"],
                labels={FILES_LABEL: instance_id},
                network_mode="none",
                volumes={self.volume_name(instance_id): {"bind": "/data", "mode": "rw"}},
            )
        except ImageNotFound:
            raise BackendError(f"image missing: {image} is not on this Docker host") from None
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

    def write_files(self, instance_id: str, files: dict[str, bytes]) -> None:
        self._put_files(instance_id, files)

    def start(self, instance_id: str) -> None:
        service = self._get(instance_id)

        def scale_up(spec: dict) -> None:
            spec["Mode"]["Replicated"]["Replicas"] = 1
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
        self._replace_task(service, self._bump_force_update)

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
        if service is not None:
            service_id = service.id
            service.remove()
            # The agent removes the task containers a moment later; do it now, so the volume is free.
            self._remove_containers({"label": f"{SERVICE_ID_LABEL}={service_id}"})
        self._remove_run_keys_secret(instance_id)
        if not keep_data:
            self._remove_volume(instance_id)
        self._cpu.forget(instance_id)

    def _remove_containers(self, filters: dict) -> None:
        for container in self.client.containers.list(all=True, filters=filters):
            with contextlib.suppress(NotFound, APIError):  # the agent may be removing it too
                container.remove(force=True)

    def _remove_volume(self, instance_id: str) -> None:
        deadline = time.monotonic() + 15
        while True:
            try:
                self.client.volumes.get(self.volume_name(instance_id)).remove(force=True)
                return
            except NotFound:
                return
            except APIError:  # still in use by a task container the agent is removing
                self._remove_containers({"volume": self.volume_name(instance_id)})
                if time.monotonic() > deadline:
                    raise BackendError(f"the data volume of {instance_id} is still in use") from None
                time.sleep(0.2)

    # --- observation ----------------------------------------------------------------------

    def status(self, instance_id: str) -> RuntimeStatus:
        service = self._service(instance_id)
        if service is None:
            return RuntimeStatus(instance_id, RuntimeState.MISSING)
        return service_status(service.attrs, self._tasks(service))

    def list_all(self) -> dict[str, RuntimeStatus]:
        """Two calls whatever the count: the services, then every task of the swarm."""
        services = self.client.api.services(filters={"label": LABEL})
        by_service: dict[str, list[dict]] = {s["ID"]: [] for s in services}
        for task in self.client.api.tasks():
            if task.get("ServiceID") in by_service:
                by_service[task["ServiceID"]].append(task)
        return {s["Spec"]["Labels"][LABEL]: service_status(s, by_service[s["ID"]]) for s in services}

    # Swarm's own log stream (`docker service logs`) reaches tasks on every node but reports new
    # lines only after several seconds; the local container's log is read when there is one.
    def logs(self, instance_id: str, tail: int) -> list[str]:
        service = self._service(instance_id)
        if service is None:
            return []
        container = self._local_container(service, running=False)
        source = container.logs(tail=tail) if container else b"".join(service.logs(stdout=True, stderr=True, tail=tail))
        return source.decode("utf-8", "replace").splitlines()

    def follow_logs(self, instance_id: str, since: datetime | None = None) -> Iterator[str]:
        service = self._get(instance_id)
        start = since or datetime.now().astimezone()
        container = self.task_container(instance_id, service)
        if container is not None:
            yield from lines_of(container.logs(stream=True, follow=True, since=start))
        else:
            yield from lines_of(service.logs(stdout=True, stderr=True, follow=True, since=start.timestamp()))

    def stats(self, instance_id: str) -> RuntimeStats:
        service = self._get(instance_id)
        container = self.task_container(instance_id, service)
        if container is None:
            raise BackendError(f"{instance_id} is not running on this node (its statistics are read where it runs)")
        return container_stats(container, instance_id, self._cpu)

    def update_limits(self, instance_id: str, cpu_limit: float, memory_limit_mb: int) -> None:
        """Swarm applies a changed spec by replacing the task: the engine restarts with the new limits."""
        service = self._get(instance_id)
        memory = memory_limit_mb * 1024 * 1024
        nano_cpus = int(cpu_limit * 1e9)

        def limits(spec: dict) -> None:
            resources = spec["TaskTemplate"].setdefault("Resources", {})
            resources.setdefault("Limits", {}).update(NanoCPUs=nano_cpus, MemoryBytes=memory)
            resources.setdefault("Reservations", {}).update(NanoCPUs=nano_cpus // 4, MemoryBytes=memory // 4)

        current = service.attrs["Spec"]["TaskTemplate"].get("Resources", {}).get("Limits", {})
        if current.get("NanoCPUs") == nano_cpus and current.get("MemoryBytes") == memory:
            return
        try:
            if _replicas(service.attrs) == 0:
                self._update(service, limits)  # applies when it next starts
            else:
                self._replace_task(service, limits)
        except APIError as error:
            raise BackendError(f"swarm refused the new limits: {error.explanation}") from None

    def endpoint(self, instance_id: str) -> tuple[str, int]:
        service = self._get(instance_id)
        if self.network == "host":
            return "127.0.0.1", int(service.attrs["Spec"]["Labels"]["quantmesh.port"])
        return self.service_name(instance_id), ENGINE_PORT  # swarm's DNS on the shared overlay network
