"""What the docker and swarm backends share: labels and names of the units, the engine's command
line inside a container, files copied into and out of the /data volume, log lines, and the CPU and
memory of a running container against its limits."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime

from docker.errors import NotFound

from .base import SECRET_FILES, InstanceSpec, RuntimeStats
from .docker_api import container_update

LABEL = "quantmesh.instance"
ENGINE_UID = 10001
ENGINE_PORT = 8080


def docker_time(value: str | None) -> datetime | None:
    if not value or value.startswith("0001-"):
        return None
    # Docker gives nanoseconds; Python's parser takes microseconds.
    head, _, rest = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(rest + '000000')[:6]}+00:00")


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
    for body in steps:
        container_update(client, container.id, body)
