"""The `memory` backend (tests): instances kept in this process's memory, no engine behind them.

It keeps the runtime contract the other backends keep (tests/instances/runtime/test_contract.py),
so the portal's own logic (converge, reconcile, limits, files) runs against it in milliseconds.
A running unit answers HTTP on its endpoint as an engine's /healthz does (200, or 503 once
`set_healthy(False)`), so the portal's health probe works unchanged; every other path is 404.
`crash()` ends a unit as a killed engine would. Nothing outlives the process: never for production.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .base import (
    BackendError,
    InstanceSpec,
    RuntimeBackend,
    RuntimeState,
    RuntimeStats,
    RuntimeStatus,
    free_port,
)


@dataclass
class _Unit:
    spec: InstanceSpec
    port: int
    cpu_limit: float
    memory_limit_mb: int
    state: RuntimeState = RuntimeState.CREATED
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    healthy: bool = True
    cpu_usage: float = 0.0
    memory_usage: float = 0.0
    logs: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None


def _line(message: str) -> str:
    """A log line as the engine writes it: `2026-11-24T19:57:29.123Z INFO message`."""
    now = datetime.now(UTC)
    return f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond // 1000:03d}Z INFO {message}"


def _line_time(line: str) -> datetime | None:
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00"))
    return None


class MemoryBackend(RuntimeBackend):
    name = "memory"

    def __init__(self):
        self._units: dict[str, _Unit] = {}
        self._volumes: dict[str, dict[str, bytes]] = {}  # kept by remove(keep_data=True)
        self._changed = threading.Condition()  # guards both; notified on every new log line or state

    def _get(self, instance_id: str) -> _Unit:
        unit = self._units.get(instance_id)
        if unit is None:
            raise BackendError(f"{instance_id} has no unit")
        return unit

    def _log(self, unit: _Unit, message: str) -> None:
        unit.logs.append(_line(message))
        self._changed.notify_all()

    # --- lifecycle ------------------------------------------------------------------------

    def ensure_unit(self, spec: InstanceSpec) -> None:
        with self._changed:
            if spec.instance_id not in self._units:
                self._units[spec.instance_id] = _Unit(
                    spec=spec, port=free_port(), cpu_limit=spec.cpu_limit, memory_limit_mb=spec.memory_limit_mb
                )
            self._volumes.setdefault(spec.instance_id, {})

    def write_files(self, instance_id: str, files: dict[str, bytes]) -> None:
        with self._changed:
            self._get(instance_id)
            self._volumes[instance_id].update(files)

    def read_file(self, instance_id: str, name: str) -> bytes | None:
        with self._changed:
            return self._volumes.get(instance_id, {}).get(name)

    def start(self, instance_id: str) -> None:
        with self._changed:
            unit = self._get(instance_id)
            if unit.state == RuntimeState.RUNNING:
                return
            unit.server = self._serve(unit)
            unit.state, unit.exit_code, unit.oom_killed = RuntimeState.RUNNING, None, False
            unit.started_at, unit.finished_at = datetime.now(UTC), None
            self._log(unit, f"engine started port={unit.port} instance={instance_id}")

    def stop(self, instance_id: str, timeout: int) -> None:
        with self._changed:
            unit = self._units.get(instance_id)
            if unit is not None and unit.state == RuntimeState.RUNNING:
                self._log(unit, "engine stopped")
                self._end(unit, exit_code=0)

    def crash(self, instance_id: str, exit_code: int = 137, *, oom_killed: bool = False) -> None:
        """End the engine as a crash would (137: SIGKILL), without a stop."""
        with self._changed:
            self._end(self._get(instance_id), exit_code=exit_code, oom_killed=oom_killed)

    def _end(self, unit: _Unit, *, exit_code: int, oom_killed: bool = False) -> None:
        if unit.server is not None:
            unit.server.shutdown()
            unit.server.server_close()
            unit.server = None
        unit.state, unit.exit_code, unit.oom_killed = RuntimeState.EXITED, exit_code, oom_killed
        unit.finished_at = datetime.now(UTC)
        self._changed.notify_all()

    def restart(self, instance_id: str) -> None:
        self._get(instance_id)
        self.stop(instance_id, timeout=10)
        self.start(instance_id)

    def remove(self, instance_id: str, keep_data: bool = True) -> None:
        with self._changed:
            unit = self._units.pop(instance_id, None)
            if unit is not None and unit.state == RuntimeState.RUNNING:
                self._end(unit, exit_code=137)
            if not keep_data:
                self._volumes.pop(instance_id, None)
            self._changed.notify_all()

    # --- what tests set -------------------------------------------------------------------

    def set_healthy(self, instance_id: str, healthy: bool) -> None:
        """What the engine's /healthz answers from now on (and the listing reports)."""
        with self._changed:
            self._get(instance_id).healthy = healthy

    def set_usage(self, instance_id: str, *, cpu: float, memory: float) -> None:
        """The CPU and memory use stats() reports, as fractions of the limits."""
        with self._changed:
            unit = self._get(instance_id)
            unit.cpu_usage, unit.memory_usage = cpu, memory

    # --- observation ----------------------------------------------------------------------

    def status(self, instance_id: str) -> RuntimeStatus:
        with self._changed:
            unit = self._units.get(instance_id)
            if unit is None:
                return RuntimeStatus(instance_id, RuntimeState.MISSING)
            running = unit.state == RuntimeState.RUNNING
            return RuntimeStatus(
                instance_id,
                unit.state,
                exit_code=unit.exit_code,
                oom_killed=unit.oom_killed,
                started_at=unit.started_at,
                finished_at=unit.finished_at,
                healthy=unit.healthy if running else None,
            )

    def list_all(self) -> dict[str, RuntimeStatus]:
        with self._changed:
            return {instance_id: self.status(instance_id) for instance_id in list(self._units)}

    def logs(self, instance_id: str, tail: int) -> list[str]:
        with self._changed:
            unit = self._units.get(instance_id)
            return unit.logs[-tail:] if unit is not None and tail > 0 else []

    def follow_logs(self, instance_id: str, since: datetime | None = None) -> Iterator[str]:
        with self._changed:
            unit = self._get(instance_id)
            if since is None:
                position = len(unit.logs)
            else:
                position = next(
                    (n for n, line in enumerate(unit.logs) if (_line_time(line) or since) > since), len(unit.logs)
                )
        while True:
            with self._changed:
                self._changed.wait_for(
                    lambda seen=position: len(unit.logs) > seen or unit.state != RuntimeState.RUNNING, timeout=1.0
                )
                new, position = unit.logs[position:], len(unit.logs)
                ended = unit.state != RuntimeState.RUNNING or self._units.get(instance_id) is not unit
            yield from new
            if ended:
                return

    def stats(self, instance_id: str) -> RuntimeStats:
        with self._changed:
            unit = self._get(instance_id)
            if unit.state != RuntimeState.RUNNING:
                raise BackendError(f"{instance_id} is not running")
            memory_limit = unit.memory_limit_mb * 1024 * 1024
            return RuntimeStats(
                cpu_usage=unit.cpu_usage,
                memory_usage=unit.memory_usage,
                memory_bytes=int(unit.memory_usage * memory_limit),
                cpu_limit=unit.cpu_limit,
                memory_limit_mb=unit.memory_limit_mb,
                started_at=unit.started_at,
            )

    def update_limits(self, instance_id: str, cpu_limit: float, memory_limit_mb: int) -> None:
        with self._changed:
            unit = self._get(instance_id)
            unit.cpu_limit, unit.memory_limit_mb = cpu_limit, memory_limit_mb

    def endpoint(self, instance_id: str) -> tuple[str, int]:
        with self._changed:
            return "127.0.0.1", self._get(instance_id).port

    # --- the engine's stand-in on its port ------------------------------------------------

    @staticmethod
    def _serve(unit: _Unit) -> ThreadingHTTPServer:
        class Health(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server hook)
                if self.path != "/healthz":
                    self.send_error(404)
                    return
                body = json.dumps({"status": "ok" if unit.healthy else "error"}).encode()
                self.send_response(200 if unit.healthy else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # requests are not the engine's log
                pass

        server = ThreadingHTTPServer(("127.0.0.1", unit.port), Health)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        return server
