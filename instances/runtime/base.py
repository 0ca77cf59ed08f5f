"""The one small interface every runtime backend implements (process, docker, swarm)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path


@dataclass(frozen=True)
class InstanceSpec:
    """Everything a backend needs to run one instance."""

    instance_id: str
    owner_id: int
    image: str
    cpu_limit: float
    memory_limit_mb: int
    pids_limit: int
    # Files written into the instance's data directory before it starts (platform.yaml): never env vars.
    files: dict[str, bytes] = field(default_factory=dict)
    # The engine's run keys (proxy secret, the key of its secrets on the volume): handed over outside the
    # volume, on a tmpfs (process, docker) or as a Docker secret (swarm), at RUN_KEYS_PATH in containers.
    run_keys: bytes = b""
    # The set of nodes to run on (swarm: nodes labelled with it); "" is the backend's default place.
    region: str = ""


RUN_KEYS_DIR = "/run/quantmesh"
RUN_KEYS_PATH = f"{RUN_KEYS_DIR}/keys.yaml"
# Files of the data volume that hold secrets: written 0600 on every backend.
SECRET_FILES = {"platform.yaml", "secrets.yaml", "secrets.enc"}


def free_port() -> int:
    """A TCP port nobody listens on now, on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_keys_root() -> Path:
    """The host's tmpfs (/dev/shm), or the temporary directory where a system has none."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()  # noqa: S108
    return Path(base) / f"quantmesh-keys-{os.getuid()}"


def host_keys_dir(root, instance_id: str, mode: int = 0o700) -> Path:
    """A per-instance directory for the run keys file under `root` on the host's tmpfs (root: 0700,
    so nobody else on the host reaches it)."""
    Path(root).mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)
    directory = Path(root) / instance_id
    directory.mkdir(exist_ok=True, mode=mode)
    os.chmod(directory, mode)
    return directory


def remove_keys_dir(root, instance_id: str) -> None:
    shutil.rmtree(Path(root) / instance_id, ignore_errors=True)


def write_run_keys(directory: Path, content: bytes, mode: int = 0o600) -> Path:
    path = directory / "keys.yaml"
    tmp = directory / "keys.yaml.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path


class RuntimeState(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    RESTARTING = "restarting"
    EXITED = "exited"
    MISSING = "missing"
    # Its node does not answer or is drained (swarm): nothing is known of the engine, nothing is lost.
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class RuntimeStatus:
    instance_id: str
    state: RuntimeState
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # The runtime's own health check of the engine (docker HEALTHCHECK); None when it has none.
    healthy: bool | None = None
    # Why it cannot run, in words (e.g. the image is missing).
    error: str = ""


@dataclass(frozen=True)
class RuntimeStats:
    cpu_usage: float  # fraction of the CPU limit
    memory_usage: float  # fraction of the memory limit
    memory_bytes: int
    cpu_limit: float
    memory_limit_mb: int
    started_at: datetime | None


class BackendError(Exception):
    """A backend operation that cannot be carried out; the message is for people."""


class RuntimeBackend(ABC):
    name: str

    def create(self, spec: InstanceSpec) -> None:
        """Create the instance's runtime unit (not started) and write its files. Idempotent: an
        existing unit is reused and only its files are rewritten. A caller that only has files to
        write calls write_files()."""
        self.ensure_unit(spec)
        self.write_files(spec.instance_id, spec.files)

    @abstractmethod
    def ensure_unit(self, spec: InstanceSpec) -> None:
        """The unit and its data volume exist (made if missing, not started) and hold the run keys."""

    @abstractmethod
    def start(self, instance_id: str) -> None: ...

    @abstractmethod
    def stop(self, instance_id: str, timeout: int) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after `timeout` seconds). Stopping a stopped one is a no-op."""

    @abstractmethod
    def restart(self, instance_id: str) -> None: ...

    @abstractmethod
    def remove(self, instance_id: str, keep_data: bool = True) -> None:
        """Remove the runtime unit; the data stays unless keep_data is False. Missing is a no-op."""

    @abstractmethod
    def status(self, instance_id: str) -> RuntimeStatus: ...

    @abstractmethod
    def list_all(self) -> dict[str, RuntimeStatus]:
        """Every instance this backend runs, in one listing (reconcile's only call)."""

    @abstractmethod
    def logs(self, instance_id: str, tail: int) -> list[str]: ...

    @abstractmethod
    def follow_logs(self, instance_id: str, since: datetime | None = None) -> Iterator[str]:
        """New log lines as they are written, from `since` (default: now), until the engine stops."""

    @abstractmethod
    def stats(self, instance_id: str) -> RuntimeStats: ...

    @abstractmethod
    def update_limits(self, instance_id: str, cpu_limit: float, memory_limit_mb: int) -> None:
        """Change CPU and memory limits in place, without a restart where the backend can."""

    def move(self, instance_id: str, region: str, ready: Callable[[], str | None] | None = None) -> None:
        """Run the instance, data and all, on a node of `region`, keeping the old copy until `ready()`
        reports no problem; on failure it runs where it was."""
        raise BackendError(f"the {self.name} backend runs on one server: it has no regions to move to")

    @abstractmethod
    def endpoint(self, instance_id: str) -> tuple[str, int]:
        """Where the portal reaches the engine's HTTP port."""

    @abstractmethod
    def read_file(self, instance_id: str, name: str) -> bytes | None:
        """A file of the instance's data volume, running or stopped; None when it does not exist."""

    @abstractmethod
    def write_files(self, instance_id: str, files: dict[str, bytes]) -> None:
        """Write files into the unit's data volume (SECRET_FILES 0600), replacing those of the same
        name, whether it runs or not; BackendError when the instance has no unit."""
