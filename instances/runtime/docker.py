"""The `docker` backend (production): one container per instance from the engine image.

Containers are found by their `quantmesh.instance` label, never by name. Each gets the plan's
limits (nano_cpus, memory = memory+swap, pids), init, a non-root user, a read-only root, the
restart policy on-failure, rotated json-file logs and a named volume at /data, into which the
platform file is copied (never env vars, which `docker inspect` would show).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from .base import (
    RUN_KEYS_DIR,
    RUN_KEYS_PATH,
    BackendError,
    InstanceSpec,
    RuntimeBackend,
    RuntimeState,
    RuntimeStats,
    RuntimeStatus,
    default_keys_root,
    free_port,
    host_keys_dir,
    remove_keys_dir,
    write_run_keys,
)
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

# The deployment a container belongs to: a backend with a scope sees only its own deployment's
# containers, so two deployments (or test runs) sharing a Docker engine never take each other's
# containers for orphans.
SCOPE_LABEL = "quantmesh.scope"
STATES = {
    "created": RuntimeState.CREATED,
    "running": RuntimeState.RUNNING,
    "restarting": RuntimeState.RESTARTING,
    "paused": RuntimeState.RUNNING,
    "exited": RuntimeState.EXITED,
    "dead": RuntimeState.EXITED,
    "removing": RuntimeState.EXITED,
}


def docker_available() -> bool:
    try:
        docker.from_env(timeout=5).ping()
        return True
    except (DockerException, OSError):
        return False


UPTIME_UNITS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 604800,
    "month": 2592000,
    "year": 31536000,
}


def _earliest_start(status_text: str) -> datetime | None:
    """The earliest time a container can have started, from the listing's "Up 5 minutes" (the
    listing has no start time; this keeps reconcile at one call). Rounded towards the past, so a
    later start is never imagined."""
    if not status_text.startswith("Up "):
        return None
    words = status_text[3:].split(" (")[0].lower().split()
    if not words:
        return None
    count = 1 if words[0] in ("about", "a", "an", "less") else int(words[0]) if words[0].isdigit() else None
    unit = next((UPTIME_UNITS[u] for u in UPTIME_UNITS if any(w.startswith(u) for w in words)), None)
    if count is None or unit is None:
        return None
    return datetime.now(UTC) - timedelta(seconds=(count + 1) * unit)


class DockerBackend(RuntimeBackend):
    name = "docker"

    def __init__(
        self, *, network: str = "host", client=None, restart_retries: int = 3, scope: str = "", keys_root=None
    ):
        self.client = client or docker.from_env(timeout=30)
        self.keys_root = keys_root or default_keys_root()
        self.network = network
        self.scope_labels = {SCOPE_LABEL: scope} if scope else {}
        self._scope_filters = [f"{SCOPE_LABEL}={scope}"] if scope else []
        self.restart_retries = restart_retries
        self._cpu = CpuSampler()

    container_name = staticmethod(unit_name)
    volume_name = staticmethod(data_volume_name)

    def _find(self, instance_id: str):
        found = self.client.containers.list(
            all=True, filters={"label": [f"{LABEL}={instance_id}", *self._scope_filters]}
        )
        return found[0] if found else None

    def _get(self, instance_id: str):
        container = self._find(instance_id)
        if container is None:
            raise BackendError(f"{instance_id} has no container")
        return container

    # --- lifecycle ------------------------------------------------------------------------

    def _keys_dir(self, instance_id: str):
        # 0711: the engine's user (another uid) opens the file through the bind mount; nobody lists it.
        return host_keys_dir(self.keys_root, instance_id, mode=0o711)

    def ensure_unit(self, spec: InstanceSpec) -> None:
        # The run keys: on the host's tmpfs, bind-mounted read-only (never in the volume or an env var).
        write_run_keys(self._keys_dir(spec.instance_id), spec.run_keys, mode=0o644)
        if self._find(spec.instance_id) is None:
            self._create_container(spec)

    def read_file(self, instance_id: str, name: str) -> bytes | None:
        return read_data_file(self._get(instance_id), name)

    def write_files(self, instance_id: str, files: dict[str, bytes]) -> None:
        put_files(self._get(instance_id), files)

    def _create_container(self, spec: InstanceSpec):
        host_network = self.network == "host"
        port = free_port() if host_network else ENGINE_PORT
        self.client.volumes.create(self.volume_name(spec.instance_id), labels={LABEL: spec.instance_id})
        memory = f"{spec.memory_limit_mb}m"
        try:
            return self.client.containers.create(
                spec.image,
                command=engine_command(host_network=host_network, port=port, keys_file=RUN_KEYS_PATH),
                name=self.container_name(spec.instance_id),
                labels={**unit_labels(spec, port), **self.scope_labels},
                nano_cpus=int(spec.cpu_limit * 1e9),
                mem_limit=memory,
                memswap_limit=memory,
                pids_limit=spec.pids_limit,
                init=True,
                user=f"{ENGINE_UID}:{ENGINE_UID}",
                read_only=True,
                tmpfs={"/tmp": "size=16m"},  # noqa: S108 (the container's own tmpfs)
                security_opt=["no-new-privileges"],
                cap_drop=["ALL"],
                restart_policy={"Name": "on-failure", "MaximumRetryCount": self.restart_retries},
                log_config={"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
                network_mode=self.network,
                volumes={
                    self.volume_name(spec.instance_id): {"bind": "/data", "mode": "rw"},
                    str(self._keys_dir(spec.instance_id)): {"bind": RUN_KEYS_DIR, "mode": "ro"},
                },
                stop_signal="SIGTERM",
            )
        except ImageNotFound:
            raise BackendError(f"image missing: {spec.image} is not on this Docker host") from None
        except APIError as error:
            if error.status_code == 409:  # a concurrent create won the name: use that container
                return self._get(spec.instance_id)
            raise BackendError(f"docker refused to create the container: {error.explanation}") from None

    def start(self, instance_id: str) -> None:
        self._get(instance_id).start()

    def stop(self, instance_id: str, timeout: int) -> None:
        container = self._find(instance_id)
        if container is not None and container.status in ("running", "restarting", "paused"):
            container.stop(timeout=timeout)

    def restart(self, instance_id: str) -> None:
        self._get(instance_id).restart(timeout=10)

    def remove(self, instance_id: str, keep_data: bool = True) -> None:
        container = self._find(instance_id)
        if container is not None:
            container.remove(force=True)
        remove_keys_dir(self.keys_root, instance_id)
        if not keep_data:
            with contextlib.suppress(NotFound):
                self.client.volumes.get(self.volume_name(instance_id)).remove(force=True)
        self._cpu.forget(instance_id)

    # --- observation ----------------------------------------------------------------------

    def status(self, instance_id: str) -> RuntimeStatus:
        container = self._find(instance_id)
        if container is None:
            return RuntimeStatus(instance_id, RuntimeState.MISSING)
        state = container.attrs["State"]
        health = (state.get("Health") or {}).get("Status")
        return RuntimeStatus(
            instance_id=instance_id,
            state=STATES.get(state["Status"], RuntimeState.EXITED),
            exit_code=state.get("ExitCode") if state["Status"] in ("exited", "dead") else None,
            oom_killed=bool(state.get("OOMKilled")),
            started_at=docker_time(state.get("StartedAt")),
            finished_at=docker_time(state.get("FinishedAt")),
            healthy=None if health in (None, "starting") else health == "healthy",
            error=state.get("Error", ""),
        )

    def list_all(self) -> dict[str, RuntimeStatus]:
        """One listing call; the summaries carry state, health and the exit code in `Status`."""
        containers = self.client.containers.list(
            all=True, filters={"label": [LABEL, *self._scope_filters]}, sparse=True
        )
        return {c.attrs["Labels"][LABEL]: self._summary_status(c.attrs) for c in containers}

    @staticmethod
    def _summary_status(summary: dict) -> RuntimeStatus:
        text = summary.get("Status", "")  # e.g. "Up 5 minutes (healthy)", "Exited (137) 3 seconds ago"
        exit_code = None
        if text.startswith("Exited (") and ")" in text:
            exit_code = int(text[len("Exited (") : text.index(")")])
        healthy = True if "(healthy)" in text else False if "(unhealthy)" in text else None
        return RuntimeStatus(
            instance_id=summary["Labels"][LABEL],
            state=STATES.get(summary.get("State", ""), RuntimeState.EXITED),
            exit_code=exit_code,
            started_at=_earliest_start(text),
            healthy=healthy,
        )

    def logs(self, instance_id: str, tail: int) -> list[str]:
        container = self._find(instance_id)
        if container is None:
            return []
        return container.logs(tail=tail).decode("utf-8", "replace").splitlines()

    def follow_logs(self, instance_id: str, since: datetime | None = None) -> Iterator[str]:
        container = self._get(instance_id)
        yield from lines_of(container.logs(stream=True, follow=True, since=since or datetime.now().astimezone()))

    def stats(self, instance_id: str) -> RuntimeStats:
        container = self._get(instance_id)
        if container.status != "running":
            raise BackendError(f"{instance_id} is not running")
        return container_stats(container, instance_id, self._cpu)

    def update_limits(self, instance_id: str, cpu_limit: float, memory_limit_mb: int) -> None:
        update_container_limits(self.client, self._get(instance_id), cpu_limit, memory_limit_mb)

    def endpoint(self, instance_id: str) -> tuple[str, int]:
        container = self._get(instance_id)
        if self.network == "host":
            return "127.0.0.1", int(container.labels["quantmesh.port"])
        address = container.attrs["NetworkSettings"]["Networks"][self.network]["IPAddress"]
        return address, ENGINE_PORT
