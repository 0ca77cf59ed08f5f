"""Per-instance cgroups for the `process` backend: memory, CPU and pid limits, and usage counters.

Works with cgroup v2 (unified) and v1 (one hierarchy per controller). Where cgroups are not
writable the backend runs without them and says so in its status.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
GROUP = "quantmesh"
CFS_PERIOD_US = 100_000


class Cgroup:
    def __init__(self, name: str):
        self.name = name
        self.v2 = (ROOT / "cgroup.controllers").exists()

    def _dir(self, controller: str) -> Path:
        return ROOT / GROUP / self.name if self.v2 else ROOT / controller / GROUP / self.name

    @staticmethod
    def available() -> bool:
        probe = Cgroup("probe")
        try:
            for controller in ("memory", "cpu", "pids"):
                path = probe._dir(controller)
                path.mkdir(parents=True, exist_ok=True)
                path.rmdir()
            if probe.v2:
                _enable_v2_controllers()
            return True
        except OSError:
            return False

    def create(self, *, cpu_limit: float, memory_limit_mb: int, pids_limit: int) -> None:
        if self.v2:
            _enable_v2_controllers()
        for controller in ("memory", "cpu", "pids", "cpuacct"):
            if self.v2 and controller == "cpuacct":
                continue
            self._dir(controller).mkdir(parents=True, exist_ok=True)
        self.set_limits(cpu_limit=cpu_limit, memory_limit_mb=memory_limit_mb)
        self._write("pids", "pids.max", pids_limit)

    def set_limits(self, *, cpu_limit: float, memory_limit_mb: int) -> None:
        memory = memory_limit_mb * 1024 * 1024
        quota = int(cpu_limit * CFS_PERIOD_US)
        if self.v2:
            self._write("memory", "memory.max", memory)
            self._write("memory", "memory.swap.max", 0)
            self._write("cpu", "cpu.max", f"{quota} {CFS_PERIOD_US}")
        else:
            # memsw must stay >= mem: lower memsw last when shrinking, first when growing.
            current = int(self.read("memory", "memory.limit_in_bytes") or 0)
            order = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
            if current and memory > current:
                order.reverse()
            for name in order:
                self._write("memory", name, memory, missing_ok=name.endswith("memsw.limit_in_bytes"))
            self._write("cpu", "cpu.cfs_period_us", CFS_PERIOD_US)
            self._write("cpu", "cpu.cfs_quota_us", quota)

    def attach(self, pid: int) -> None:
        for controller in ("memory", "cpu", "pids") if self.v2 else ("memory", "cpu", "pids", "cpuacct"):
            self._write(controller, "cgroup.procs", pid)
            if self.v2:
                break  # one unified group

    def memory_bytes(self) -> int | None:
        value = self.read("memory", "memory.current" if self.v2 else "memory.usage_in_bytes")
        return int(value) if value else None

    def cpu_seconds(self) -> float | None:
        if self.v2:
            text = self.read("cpu", "cpu.stat")
            if not text:
                return None
            usage = dict(line.split() for line in text.splitlines())
            return int(usage["usage_usec"]) / 1e6
        value = self.read("cpuacct", "cpuacct.usage")
        return int(value) / 1e9 if value else None

    def remove(self) -> None:
        for controller in ("memory", "cpu", "pids", "cpuacct"):
            with contextlib.suppress(OSError):
                self._dir(controller).rmdir()

    def _write(self, controller: str, name: str, value, missing_ok: bool = False) -> None:
        try:
            (self._dir(controller) / name).write_text(str(value))
        except FileNotFoundError:
            if not missing_ok:
                raise

    def read(self, controller: str, name: str) -> str | None:
        """A control file of the group (e.g. "memory", "memory.max"), stripped; None when unreadable."""
        try:
            return (self._dir(controller) / name).read_text().strip()
        except OSError:
            return None


def _enable_v2_controllers() -> None:
    (ROOT / GROUP).mkdir(exist_ok=True)
    for parent in (ROOT, ROOT / GROUP):
        with contextlib.suppress(OSError):
            (parent / "cgroup.subtree_control").write_text("+memory +cpu +pids")
