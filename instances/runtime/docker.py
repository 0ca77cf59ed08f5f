"""The `docker` backend (production): one container per instance from the engine image.

Containers are found by their `quantmesh.instance` label, never by name. Each gets the plan's
limits (nano_cpus, memory = memory+swap, pids), init, a non-root user, a read-only root, the
restart policy on-failure, rotated json-file logs and a named volume at /data, into which the
platform file is copied (never env vars, which `docker inspect` would show).
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import tarfile
import threading
import time
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
    host_keys_dir,
    remove_keys_dir,
    write_run_keys,
)

LABEL = "quantmesh.instance"
# The deployment a container belongs to: a backend with a scope sees only its own deployment's
# containers, so two deployments (or test runs) sharing a Docker engine never take each other's
# containers for orphans.
SCOPE_LABEL = "quantmesh.scope"
ENGINE_UID = 10001
SECRET_FILES = {"platform.yaml", "secrets.yaml", "secrets.enc"}
ENGINE_PORT = 8080
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


def docker_time(value: str | None) -> datetime | None:
    if not value or value.startswith("0001-"):
        return None
    # Docker gives nanoseconds; Python's parser takes microseconds.
    head, _, rest = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(rest + '000000')[:6]}+00:00")


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


def unit_name(instance_id: str) -> str:
    """The instance's container (docker) or service (swarm); found by label, named for people."""
    return f"quantmesh-{instance_id}"


def data_volume_name(instance_id: str) -> str:
    return f"qm-data-{instance_id}"


def engine_command(*, host_network: bool, port: int, keys_file: str, listen: str = "127.0.0.1") -> list[str]:
    """The engine's arguments: on host networking it listens on `listen` only (loopback by default)."""
    listen = listen if host_network else "0.0.0.0"  # noqa: S104 (its own network namespace)
    return ["--data-dir", "/data", "--host", listen, "--port", str(port), "--keys-file", keys_file]


def unit_labels(spec: InstanceSpec, port: int) -> dict[str, str]:
    return {LABEL: spec.instance_id, "quantmesh.owner": str(spec.owner_id), "quantmesh.port": str(port)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def put_files(container, files: dict[str, bytes]) -> None:
    """Copy files into the container's /data volume (secrets 0600, owned by the engine's user);
    works on a created, running or stopped container."""
    if not files:
        return
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o600 if name in SECRET_FILES else 0o644
            info.uid = info.gid = ENGINE_UID
            info.mtime = int(time.time())
            archive.addfile(info, io.BytesIO(content))
    container.put_archive("/data", buffer.getvalue())


def read_data_file(container, name: str) -> bytes | None:
    try:
        chunks, _ = container.get_archive(f"/data/{name}")
    except NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
        member = archive.extractfile(name)
        return member.read() if member else None


def lines_of(chunks: Iterator[bytes]) -> Iterator[str]:
    """Whole lines out of a log stream's chunks."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


class CpuSampler:
    """CPU use since the previous sample of the same instance (or since its start), as a fraction
    of its limit: Docker reports only a cumulative counter."""

    def __init__(self):
        self._samples: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def fraction(self, instance_id: str, total_ns: int, started: datetime | None, cpu_limit: float) -> float:
        now = time.time()
        with self._lock:
            previous = self._samples.get(instance_id)
            self._samples[instance_id] = (now, total_ns)
        if previous and previous[1] <= total_ns and now - previous[0] < 300:
            elapsed, used = now - previous[0], total_ns - previous[1]
        else:
            elapsed, used = (now - started.timestamp()) if started else 0, total_ns
        if elapsed <= 0:
            return 0.0
        return max(0.0, min(1.0, used / 1e9 / elapsed / cpu_limit))

    def forget(self, instance_id: str) -> None:
        self._samples.pop(instance_id, None)


def container_stats(container, instance_id: str, sampler: CpuSampler) -> RuntimeStats:
    """One running container's CPU and memory against its limits."""
    raw = container.stats(stream=False, one_shot=True)
    host = container.attrs["HostConfig"]
    cpu_limit = (host.get("NanoCpus") or 0) / 1e9 or float(os.cpu_count() or 1)
    memory_limit = host.get("Memory") or raw["memory_stats"].get("limit") or 1
    memory_stats = raw.get("memory_stats", {})
    details = memory_stats.get("stats", {})
    # What the kernel could reclaim at once is not the engine's memory (as `docker stats` shows).
    memory = max(0, memory_stats.get("usage", 0) - details.get("inactive_file", details.get("cache", 0)))
    started = docker_time(container.attrs["State"].get("StartedAt"))
    total_ns = raw["cpu_stats"]["cpu_usage"]["total_usage"]
    return RuntimeStats(
        cpu_usage=sampler.fraction(instance_id, total_ns, started, cpu_limit),
        memory_usage=memory / memory_limit,
        memory_bytes=memory,
        cpu_limit=cpu_limit,
        memory_limit_mb=int(memory_limit // (1024 * 1024)),
        started_at=started,
    )


def update_container_limits(client, container, cpu_limit: float, memory_limit_mb: int) -> None:
    """Change a container's CPU and memory limits in place (no restart)."""
    memory = memory_limit_mb * 1024 * 1024
    current = container.attrs["HostConfig"].get("Memory") or 0
    # Docker checks memory <= memory+swap after each step: when growing, raise swap first.
    grow = [{"MemorySwap": memory}, {"Memory": memory}]
    steps = grow if memory >= current else grow[::-1]
    steps[-1]["NanoCpus"] = int(cpu_limit * 1e9)
    api = client.api
    for body in steps:
        # The SDK's update() knows no NanoCpus, and CPU quota/period conflict with it: use the API.
        response = api._post_json(api._url("/containers/{0}/update", container.id), data=body)
        api._raise_for_status(response)


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

    def create(self, spec: InstanceSpec) -> None:
        # The run keys: on the host's tmpfs, bind-mounted read-only (never in the volume or an env var).
        write_run_keys(self._keys_dir(spec.instance_id), spec.run_keys, mode=0o644)
        container = self._find(spec.instance_id)
        if container is None:
            container = self._create_container(spec)
        put_files(container, spec.files)

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
