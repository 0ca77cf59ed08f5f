"""A burst of waiting creates beside readers, on daphne + PostgreSQL + Redis with a real Celery
worker and the `process` runtime backend (real engines):
- 50 readers alone for 10 s (GET /api/saas/instances and /api/auth/me): the unloaded read p99;
- the same 50 readers while 50 other users each create an instance with the default wait (the
  POST answers once the engine runs): create p50/p95, read p99 against the unloaded one, errors.

Needs PostgreSQL at 127.0.0.1:5432 (the database BENCH_BURST_DATABASE, default `qm_bench_burst`, is
created when missing, else flushed) and Redis at BENCH_REDIS_URL (default database 9, flushed)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
import redis

from bench.bench_load_mixed import (
    PG_HOST,
    PG_PORT,
    PG_USER,
    _clean_engines,
    _django,
    _manage,
    _start_worker,
    _stop_worker,
)
from bench.common import Result, percentile
from bench.portal_server import running_portal

CREATES = int(os.environ.get("BENCH_BURST_CREATES", "50"))
READERS = int(os.environ.get("BENCH_BURST_READERS", "50"))
UNLOADED_SECONDS = 10
REQUEST_TIMEOUT_SECONDS = 120
DATABASE_NAME = os.environ.get("BENCH_BURST_DATABASE", "qm_bench_burst")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
READ_PATHS = ("/api/saas/instances", "/api/auth/me")


async def _timed(
    session, method: str, url: str, token: str, body: dict | None = None
) -> tuple[int | None, bytes, float]:
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    try:
        async with session.request(method, url, headers=headers, json=body) as response:
            payload = await response.read()
            return response.status, payload, (time.perf_counter() - started) * 1000
    except (aiohttp.ClientError, TimeoutError):
        return None, b"", (time.perf_counter() - started) * 1000


async def _readers(session, base: str, tokens: list[str], until) -> tuple[list[float], int]:
    """Each reader alternates the two reads until `until()`; (latencies of the 2xx, errors)."""
    latencies: list[float] = []
    errors = 0

    async def reader(token: str, offset: int) -> None:
        nonlocal errors
        n = offset
        while not until():
            status, _, ms = await _timed(session, "GET", base + READ_PATHS[n % 2], token)
            n += 1
            if status == 200:
                latencies.append(ms)
            else:
                errors += 1

    await asyncio.gather(*(reader(token, n) for n, token in enumerate(tokens)))
    return latencies, errors


async def _load(base: str, readers: list[str], creators: list[str]) -> dict:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    connector = aiohttp.TCPConnector(limit=len(readers) + len(creators))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        stop_at = time.monotonic() + UNLOADED_SECONDS
        unloaded, unloaded_errors = await _readers(session, base, readers, lambda: time.monotonic() > stop_at)

        creates_done = asyncio.Event()
        burst_readers = asyncio.create_task(_readers(session, base, readers, creates_done.is_set))
        await asyncio.sleep(1)  # the readers are going before the burst
        answers = await asyncio.gather(
            *(_timed(session, "POST", base + "/api/saas/instances/create", t, {"plan": "personal"}) for t in creators)
        )
        creates_done.set()
        loaded, loaded_errors = await burst_readers
    bodies = [json.loads(payload) if status == 201 else {} for status, payload, _ in answers]
    return {
        "unloaded": unloaded,
        "unloaded_errors": unloaded_errors,
        "loaded": loaded,
        "loaded_errors": loaded_errors,
        "create_ms": [ms for (status, _, ms) in answers if status == 201],
        "create_errors": sum(1 for status, _, _ in answers if status != 201),
        "running": sum(1 for body in bodies if body.get("status") == "running"),
    }


def _prepare_database(env: dict) -> None:
    created = subprocess.run(
        ["createdb", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, DATABASE_NAME],  # noqa: S607
        capture_output=True,
        text=True,
    )
    if created.returncode != 0:
        if "already exists" not in created.stderr:
            raise RuntimeError(f"createdb {DATABASE_NAME}: {created.stderr.strip()}")
        _manage(env, "flush", "--noinput", "-v0")


def run() -> list[Result]:
    workdir = Path(tempfile.mkdtemp(prefix="qm-burst-"))
    process_root = workdir / "engines"
    env_extra = {
        "DATABASE_URL": f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{DATABASE_NAME}",
        "REDIS_URL": REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "0",  # a real worker, as production has
        "QM_RUNTIME_BACKEND": "process",
        "QM_PROCESS_ROOT": str(process_root),
    }
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "quantmesh.settings.base", "DEBUG": "0", "LOG_LEVEL": "WARNING"}
    env.update(env_extra)
    worker = None
    try:
        _prepare_database(env)
        redis.Redis.from_url(REDIS_URL).flushdb()
        with running_portal(env_extra) as (base, env):
            _manage(env, "load_plans", "-v0")
            worker = _start_worker(env, workdir / "worker.log")
            users = json.loads(_django(env, "seed_users", READERS + CREATES, 10**9).strip().splitlines()[-1])["users"]
            tokens = [user["token"] for user in users]
            figures = asyncio.run(_load(base, tokens[:READERS], tokens[READERS:]))
            _stop_worker(worker)
    finally:
        if worker is not None:
            _stop_worker(worker)
        if process_root.exists():
            _clean_engines(env, process_root)
        redis.Redis.from_url(REDIS_URL).flushdb()
        shutil.rmtree(workdir, ignore_errors=True)

    unloaded_p99 = percentile(figures["unloaded"], 99)
    loaded_p99 = percentile(figures["loaded"], 99)
    label = f"{CREATES} waiting creates beside {READERS} readers"
    return [
        Result(f"create burst: create p50 ({label})", percentile(figures["create_ms"], 50), "ms"),
        Result("create burst: create p95", percentile(figures["create_ms"], 95), "ms"),
        Result("create burst: creates answered running", figures["running"], "count", f"{CREATES}"),
        Result("create burst: read p99, unloaded", unloaded_p99, "ms"),
        Result("create burst: read p99, during the burst", loaded_p99, "ms"),
        Result("create burst: read p99 ratio, burst vs unloaded", loaded_p99 / unloaded_p99, "ratio", "<= 2"),
        Result("create burst: reads during the burst", len(figures["loaded"]), "count"),
        Result(
            "create burst: errors (creates, reads)",
            figures["create_errors"] + figures["loaded_errors"] + figures["unloaded_errors"],
            "count",
            "0",
        ),
    ]
