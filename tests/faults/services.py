"""Private PostgreSQL and Redis servers that a test may stop and start again (the machine's own
servers are shared by the whole run, so faults are injected into servers of the test's own)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.live_server import free_port


class PrivateRedis:
    """redis-server on a loopback port of its own, without persistence (as the machine's)."""

    def __init__(self, workdir: Path):
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()  # a crash: nothing written, every connection dropped
            self.process.wait(timeout=10)


PG_BIN = Path("/usr/lib/postgresql")


def _pg_tool(name: str) -> str | None:
    found = sorted(PG_BIN.glob(f"*/bin/{name}"))
    return str(found[-1]) if found else None


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb as the `postgres` user, loopback port)."""

    def __init__(self):
        self.initdb, self.pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
        self.port = free_port()
        # Not under pytest's tmp_path: the postgres user must reach it.
        self.workdir = Path(tempfile.mkdtemp(prefix="qm-pg-"))
        self.datadir = self.workdir / "data"

    @property
    def available(self) -> bool:
        return bool(self.initdb and self.pg_ctl and shutil.which("runuser"))

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True)

    def init(self) -> None:
        shutil.chown(self.workdir, "postgres", "postgres")
        self._as_postgres(self.initdb, "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.workdir / "postgres.log")  # the server must not hold our output pipe
        self._as_postgres(self.pg_ctl, "-D", str(self.datadir), "-l", log, "-o", options, "-w", "-t", "30", "start")

    def stop(self) -> None:
        self._as_postgres(self.pg_ctl, "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def restart_dockerd(while_down=None) -> None:
    """Stop the Docker engine as a host shutdown would (SIGTERM: it stops every container), call
    `while_down()`, then start it again as CI does."""
    import signal

    pid = int(subprocess.run(["pgrep", "-xo", "dockerd"], check=True, capture_output=True, text=True).stdout)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("dockerd did not stop within 60 s")
        time.sleep(0.2)
    try:
        if while_down is not None:
            while_down()
    finally:
        root = Path(__file__).resolve().parents[2]
        subprocess.run(["bash", str(root / "deploy/scripts/docker-up.sh")], check=True, capture_output=True)
