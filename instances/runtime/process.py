"""The `process` backend (embedded default): each instance's engine is a local subprocess.

Per instance, under the backend's root:  <id>/data (the engine's data dir), <id>/state.json
(port, limits, pid, start time), <id>/engine.log, <id>/exit.json (written by the supervisor when
the engine ends). Processes are detached, so they outlive a portal restart; a pid is trusted
only if /proc shows our supervisor for that instance. Limits go to a cgroup where the OS allows.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from .base import (
    SECRET_FILES,
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
from .cgroups import Cgroup

HEALTH_TIMEOUT = 1.0
LOG_MAX_BYTES = 20 * 1024 * 1024  # the log is cut back to its last half beyond this
PORTAL_ROOT = Path(__file__).resolve().parents[2]


class ProcessBackend(RuntimeBackend):
    name = "process"

    def __init__(
        self, root: Path, python: str = sys.executable, use_cgroups: bool | None = None, keys_root: Path | None = None
    ):
        self.root = Path(root)
        self.keys_root = Path(keys_root or default_keys_root())
        self.root.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.use_cgroups = Cgroup.available() if use_cgroups is None else use_cgroups

    # --- files ----------------------------------------------------------------------------

    def _dir(self, instance_id: str) -> Path:
        if "/" in instance_id or instance_id.startswith("."):
            raise BackendError(f"invalid instance id {instance_id!r}")
        return self.root / instance_id

    def _state(self, instance_id: str) -> dict | None:
        try:
            return json.loads((self._dir(instance_id) / "state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _save_state(self, instance_id: str, state: dict) -> None:
        path = self._dir(instance_id) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def _exit(self, instance_id: str) -> dict | None:
        try:
            return json.loads((self._dir(instance_id) / "exit.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    # --- lifecycle ------------------------------------------------------------------------

    def ensure_unit(self, spec: InstanceSpec) -> None:
        directory = self._dir(spec.instance_id)
        data = directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        os.chmod(data, 0o700)
        if spec.run_keys:
            write_run_keys(host_keys_dir(self.keys_root, spec.instance_id), spec.run_keys)
        state = self._state(spec.instance_id) or {"port": free_port(), "created_at": time.time()}
        state.update(
            owner_id=spec.owner_id,
            cpu_limit=spec.cpu_limit,
            memory_limit_mb=spec.memory_limit_mb,
            pids_limit=spec.pids_limit,
        )
        self._save_state(spec.instance_id, state)

    def _live_pid(self, instance_id: str, state: dict | None) -> int | None:
        """The supervisor's pid if it is alive and really ours (pids are reused)."""
        pid = (state or {}).get("pid")
        return pid if pid and self._is_our_supervisor(pid, instance_id) else None

    def _is_our_supervisor(self, pid: int, instance_id: str) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
        return str(self._dir(instance_id) / "exit.json").encode() in cmdline

    def _stray_supervisor(self, instance_id: str) -> int | None:
        """A supervisor for this instance that state.json does not name: its starter died between
        spawning it and recording the pid. Adopting it keeps a retried start from making a second."""
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and self._is_our_supervisor(int(entry.name), instance_id):
                return int(entry.name)
        return None

    def start(self, instance_id: str) -> None:
        state = self._state(instance_id)
        if state is None:
            raise BackendError(f"{instance_id} does not exist: create it first")
        if self._live_pid(instance_id, state):
            return
        stray = self._stray_supervisor(instance_id)
        if stray is not None:
            state.update(pid=stray, started_at=_start_time(stray))
            self._save_state(instance_id, state)
            return
        directory = self._dir(instance_id)
        (directory / "exit.json").unlink(missing_ok=True)
        self._trim_log(directory / "engine.log")
        command = [
            self.python,
            "-m",
            "instances.runtime.supervisor",
            str(directory / "exit.json"),
            "--",
            self.python,
            "-m",
            "quantmesh_engine",
            "--data-dir",
            str(directory / "data"),
            "--host",
            "127.0.0.1",
            "--port",
            str(state["port"]),
        ]
        keys = self.keys_root / instance_id / "keys.yaml"
        if keys.exists():
            command += ["--keys-file", str(keys)]
        cgroup = Cgroup(instance_id) if self.use_cgroups else None
        if cgroup:
            cgroup.create(
                cpu_limit=state["cpu_limit"], memory_limit_mb=state["memory_limit_mb"], pids_limit=state["pids_limit"]
            )
        with open(directory / "engine.log", "ab") as log:
            process = subprocess.Popen(
                command,
                cwd=PORTAL_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the portal; its own process group for signals
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONUNBUFFERED": "1", "LANG": "C.UTF-8"},
                preexec_fn=(lambda: cgroup.attach(os.getpid())) if cgroup else None,  # noqa: PLW1509
            )
        state.update(pid=process.pid, started_at=time.time())
        self._save_state(instance_id, state)

    def stop(self, instance_id: str, timeout: int) -> None:
        state = self._state(instance_id)
        pid = self._live_pid(instance_id, state)
        if pid is None:
            return
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._live_pid(instance_id, state) is None:
                return
            time.sleep(0.02)
        os.killpg(pid, signal.SIGKILL)
        while self._live_pid(instance_id, state) is not None:
            time.sleep(0.02)

    def restart(self, instance_id: str) -> None:
        self.stop(instance_id, timeout=10)
        self.start(instance_id)

    def remove(self, instance_id: str, keep_data: bool = True) -> None:
        directory = self._dir(instance_id)
        if not directory.exists():
            return
        self.stop(instance_id, timeout=10)
        if self.use_cgroups:
            Cgroup(instance_id).remove()
        remove_keys_dir(self.keys_root, instance_id)
        if keep_data:
            # Keep the data dir (backups, retention); forget the runtime unit.
            for name in ("state.json", "exit.json"):
                (directory / name).unlink(missing_ok=True)
        else:
            shutil.rmtree(directory)

    # --- observation ----------------------------------------------------------------------

    def status(self, instance_id: str) -> RuntimeStatus:
        return self._status(instance_id, self._state(instance_id))

    def _status(self, instance_id: str, state: dict | None) -> RuntimeStatus:
        if state is None:
            return RuntimeStatus(instance_id, RuntimeState.MISSING)
        started = datetime.fromtimestamp(state["started_at"], UTC) if state.get("started_at") else None
        if self._live_pid(instance_id, state):
            return RuntimeStatus(instance_id, RuntimeState.RUNNING, started_at=started)
        ended = self._exit(instance_id)
        if ended:
            return RuntimeStatus(
                instance_id,
                RuntimeState.EXITED,
                exit_code=ended["exit_code"],
                oom_killed=ended.get("oom_killed", False),
                started_at=started,
                finished_at=datetime.fromtimestamp(ended["finished_at"], UTC),
            )
        if state.get("pid"):  # died without its supervisor writing the exit (e.g. SIGKILL to the group)
            return RuntimeStatus(instance_id, RuntimeState.EXITED, exit_code=137, started_at=started)
        return RuntimeStatus(instance_id, RuntimeState.CREATED)

    def list_all(self) -> dict[str, RuntimeStatus]:
        """Every instance, with the engine's health for the running ones (as Docker's HEALTHCHECK
        gives it): the /healthz probes run side by side, so the listing stays quick."""
        states = {}
        for directory in self.root.iterdir():
            state = self._state(directory.name) if directory.is_dir() else None
            if state is not None:
                states[directory.name] = state
        result = {instance_id: self._status(instance_id, state) for instance_id, state in states.items()}
        running = [i for i, status in result.items() if status.state == RuntimeState.RUNNING]
        if running:
            with ThreadPoolExecutor(max_workers=min(16, len(running))) as pool:
                health = dict(zip(running, pool.map(lambda i: _probe(states[i]["port"]), running), strict=True))
            result.update({i: replace(result[i], healthy=health[i]) for i in running})
        return result

    def logs(self, instance_id: str, tail: int) -> list[str]:
        path = self._dir(instance_id) / "engine.log"
        try:
            with open(path, "rb") as handle:
                return [line.decode("utf-8", "replace").rstrip("\n") for line in deque(handle, maxlen=tail)]
        except FileNotFoundError:
            return []

    def follow_logs(self, instance_id: str, since: datetime | None = None) -> Iterator[str]:
        path = self._dir(instance_id) / "engine.log"
        with open(path, "rb") as handle:
            if since is None:
                handle.seek(0, os.SEEK_END)
            pending = b""
            while True:
                chunk = handle.readline()
                if chunk:
                    pending += chunk
                    if pending.endswith(b"\n"):
                        line = pending.decode("utf-8", "replace").rstrip("\n")
                        pending = b""
                        if since is None or _line_time(line) is None or _line_time(line) > since:
                            yield line
                    continue
                if self._live_pid(instance_id, self._state(instance_id)) is None:
                    return
                time.sleep(0.02)  # how long a new line may wait to be seen

    def stats(self, instance_id: str) -> RuntimeStats:
        state = self._state(instance_id)
        pid = self._live_pid(instance_id, state)
        if pid is None:
            raise BackendError(f"{instance_id} is not running")
        started = datetime.fromtimestamp(state["started_at"], UTC)
        memory_limit = state["memory_limit_mb"] * 1024 * 1024
        cgroup = Cgroup(instance_id) if self.use_cgroups else None
        memory = (cgroup.memory_bytes() if cgroup else None) or _tree_rss(pid)
        cpu_seconds = (cgroup.cpu_seconds() if cgroup else None) or _tree_cpu_seconds(pid)
        # Average use since the engine started, as a fraction of its CPU allowance.
        elapsed = max(1e-3, time.time() - state["started_at"])
        return RuntimeStats(
            cpu_usage=min(1.0, cpu_seconds / elapsed / state["cpu_limit"]),
            memory_usage=memory / memory_limit,
            memory_bytes=memory,
            cpu_limit=state["cpu_limit"],
            memory_limit_mb=state["memory_limit_mb"],
            started_at=started,
        )

    def read_file(self, instance_id: str, name: str) -> bytes | None:
        try:
            return (self._dir(instance_id) / "data" / name).read_bytes()
        except FileNotFoundError:
            return None

    def write_files(self, instance_id: str, files: dict[str, bytes]) -> None:
        if self._state(instance_id) is None:
            raise BackendError(f"{instance_id} does not exist: create it first")
        data = self._dir(instance_id) / "data"
        for name, content in files.items():
            # Secrets are created 0600 before any byte is written.
            fd = os.open(data / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if name in SECRET_FILES else 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)

    def update_limits(self, instance_id: str, cpu_limit: float, memory_limit_mb: int) -> None:
        state = self._state(instance_id)
        if state is None:
            raise BackendError(f"{instance_id} does not exist")
        state.update(cpu_limit=cpu_limit, memory_limit_mb=memory_limit_mb)
        self._save_state(instance_id, state)
        if self.use_cgroups and self._live_pid(instance_id, state):
            Cgroup(instance_id).set_limits(cpu_limit=cpu_limit, memory_limit_mb=memory_limit_mb)

    def endpoint(self, instance_id: str) -> tuple[str, int]:
        state = self._state(instance_id)
        if state is None:
            raise BackendError(f"{instance_id} does not exist")
        return "127.0.0.1", state["port"]

    @staticmethod
    def _trim_log(path: Path) -> None:
        try:
            if path.stat().st_size <= LOG_MAX_BYTES:
                return
        except FileNotFoundError:
            return
        with open(path, "rb") as handle:
            handle.seek(-LOG_MAX_BYTES // 2, os.SEEK_END)
            handle.readline()
            keep = handle.read()
        path.write_bytes(keep)


def _probe(port: int) -> bool | None:
    """The engine's /healthz: True (200), False (it answers, unhealthy), None (no answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=HEALTH_TIMEOUT) as response:  # noqa: S310
            return response.status == 200
    except urllib.error.HTTPError:
        return False
    except OSError:
        return None


def _start_time(pid: int) -> float:
    """When a process started (epoch seconds), from /proc."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot = next(
        float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
    )
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _line_time(line: str) -> datetime | None:
    stamp = line.split(" ", 1)[0]
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def _tree_pids(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            queue += [int(p) for p in Path(f"/proc/{current}/task/{current}/children").read_text().split()]
    return pids


def _tree_rss(pid: int) -> int:
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for p in _tree_pids(pid):
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * page
    return total


def _tree_cpu_seconds(pid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in _tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / ticks
