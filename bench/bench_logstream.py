"""Live logs and the instance URL on a real daphne portal with a real engine (process backend):
- latency from a line written to the engine's log to a websocket viewer, p50/p99, 1 and 200 viewers;
- loss: 1,000 lines/s for 30 s, every viewer must see every line in order (or be told of the gap);
- the same at 500 viewers (where it bends);
- proxy overhead of GET /api/export/trades (10,000 trades) through the instance URL vs the engine.

The portal runs as `make run`'s embedded default (one process, in-memory hub and channel layer);
with BENCH_LOGSTREAM_REDIS_URL it uses that Redis database (flushed) as production does.
BENCH_LOGSTREAM_EXPORT=0 leaves out the export part."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import redis
import websockets

from bench.common import Result, median, percentile
from bench.portal_server import ENTERPRISE_CUSTOMER, manage_shell, running_portal


def _api(base: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(  # noqa: S310 (loopback)
        base + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
        return json.loads(response.read())


def _writer(log: Path, rate: int, seconds: float, stop: threading.Event, tag: str) -> int:
    """Append `rate` lines a second to the engine's log, each carrying its scenario's tag and its
    write time."""
    written = 0
    started = time.time()
    with open(log, "a", buffering=1) as handle:
        while not stop.is_set() and time.time() - started < seconds:
            due = int((time.time() - started) * rate)
            while written < due:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
                handle.write(f"{stamp}.000Z INFO bench {tag} n={written} t={time.time():.6f}\n")
                written += 1
            time.sleep(0.002)
    return written


async def _viewers(url: str, token: str, count: int, rate: int, seconds: float, log: Path):
    # Scenarios share the engine's log: a viewer's backlog may hold the previous scenario's last line.
    tag = f"run={time.monotonic_ns()}"
    mark = f" bench {tag} n="
    sockets = []
    for _ in range(count):
        ws = await websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}, max_queue=None, open_timeout=30
        )
        while json.loads(await ws.recv())["type"] != "status":
            pass
        sockets.append(ws)
    latencies: list[float] = []
    stats = [{"seqs": [], "gaps": 0, "bench": 0} for _ in sockets]

    async def read(ws, stat):
        try:
            while True:
                message = json.loads(await ws.recv())
                now = time.time()
                if message["type"] == "gap":
                    stat["gaps"] += 1
                elif message["type"] == "logs":
                    stat["seqs"] += range(message["seq"], message["seq"] + len(message["lines"]))
                    for line in message["lines"]:
                        if mark in line:
                            stat["bench"] += 1
                            latencies.append((now - float(line.rsplit("t=", 1)[1])) * 1000)
        except websockets.ConnectionClosed:
            return

    readers = [asyncio.create_task(read(ws, stat)) for ws, stat in zip(sockets, stats, strict=True)]
    stop = threading.Event()
    written = await asyncio.to_thread(_writer, log, rate, seconds, stop, tag)
    await asyncio.sleep(2)  # let the last batches arrive
    for ws in sockets:
        await ws.close()
    await asyncio.gather(*readers)
    complete = sum(1 for s in stats if s["bench"] == written or s["gaps"])
    contiguous = all(s["seqs"] == list(range(s["seqs"][0], s["seqs"][0] + len(s["seqs"]))) for s in stats if s["seqs"])
    return latencies, written, complete, contiguous, sum(s["gaps"] for s in stats)


def _export_timings(base: str, token: str, host: str, engine: tuple[str, int], secret: str, rounds: int = 15):
    def timed(host_name: str, port: int, address: str, headers: dict) -> float:
        connection = http.client.HTTPConnection(address, port, timeout=60)
        started = time.perf_counter()
        connection.request("GET", "/api/export/trades", headers={"Host": host_name, **headers})
        response = connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        connection.close()
        assert response.status == 200 and body.count(b"\n") > 10_000, (response.status, body[:200])
        return elapsed

    portal_port = int(base.rsplit(":", 1)[1])
    direct, proxied = [], []
    for _ in range(rounds):  # interleaved, so both see the same machine load
        direct.append(timed(engine[0], engine[1], engine[0], {"X-QuantMesh-Proxy-Secret": secret}))
        proxied.append(timed(host, portal_port, "127.0.0.1", {"Authorization": f"Bearer {token}"}))
    return median(direct), median(proxied)


# (viewers, lines a second, seconds)
SCENARIOS = ((1, 100, 10), (200, 100, 10), (200, 1000, 30), (500, 100, 10), (500, 1000, 10))
REDIS_URL = os.environ.get("BENCH_LOGSTREAM_REDIS_URL", "")


def _portal_env(root: str) -> dict[str, str]:
    # Every viewer is the same customer's: the per-user stream limit must not cap them.
    env = {"QM_PROCESS_ROOT": root, "QM_LOGSTREAMS_PER_USER": "1000"}
    if REDIS_URL:
        redis.Redis.from_url(REDIS_URL).flushdb()
        env.update(REDIS_URL=REDIS_URL, CELERY_TASK_ALWAYS_EAGER="1")
    return env


def run() -> list[Result]:
    root = tempfile.mkdtemp(prefix="qm-bench-instances-")
    results: list[Result] = []
    mode = "Redis" if REDIS_URL else "embedded"
    with running_portal(_portal_env(root)) as (base, env):
        token = manage_shell(env, ENTERPRISE_CUSTOMER).strip()
        instance = _api(base, token, "POST", "/api/saas/instances/create", {"plan": "personal"})
        instance_id = instance["instance_id"]
        try:
            log = Path(root) / instance_id / "engine.log"
            url = base.replace("http://", "ws://") + f"/api/saas/instances/{instance_id}/logs/stream?lines=1"
            for viewers, rate, seconds in SCENARIOS:
                latencies, written, complete, contiguous, gaps = asyncio.run(
                    _viewers(url, token, viewers, rate, seconds, log)
                )
                label = f"{viewers} viewer(s), {rate} lines/s, {mode}"
                results += [
                    Result(f"ws latency p50, {label}", percentile(latencies, 50), "ms"),
                    Result(
                        f"ws latency p99, {label}",
                        percentile(latencies, 99),
                        "ms",
                        "<= 250 ms" if viewers == 200 else "",
                    ),
                ]
                if rate == 1000:
                    results += [
                        Result(f"viewers with every line or a gap notice, {label}", complete, "count", f"{viewers}"),
                        Result(f"lines written, {label}", written, "count"),
                        Result(f"sequence numbers contiguous for every viewer, {label}", int(contiguous), "bool", "1"),
                        Result(f"gap notices sent, {label}", gaps, "count"),
                    ]
            if os.environ.get("BENCH_LOGSTREAM_EXPORT", "1") == "0":
                return results

            # 10,000 trades in the engine's books, then the same export directly and through the URL.
            _api(base, token, "POST", f"/api/saas/instances/{instance_id}/stop")
            seed = (
                "import sys; sys.path.insert(0, 'engine')\n"
                "from pathlib import Path\n"
                "from quantmesh_engine.store import Store\n"
                "from quantmesh_engine.exchanges.base import Fill\n"
                f"store = Store(Path({str(Path(root) / instance_id / 'data' / 'engine.db')!r}))\n"
                "with store.transaction():\n"
                "    for n in range(10000):\n"
                "        side = 'buy' if n % 2 == 0 else 'sell'\n"
                "        store.fill_recorded(Fill(f'qm-b{n}', 'BTC/USDT', side, 30000 + n % 50, 0.001, 0.03, 'USDT',"
                " 1.7e9 + n, f'bench-{n}'), n % 10)\n"
            )
            manage_shell(env, seed)
            _api(base, token, "POST", f"/api/saas/instances/{instance_id}/start")
            secret = manage_shell(
                env,
                "from instances.models import Instance\nfrom quantmesh.crypto import decrypt\n"
                f"print(decrypt(Instance.objects.get(instance_id='{instance_id}')"
                ".proxy_secret_encrypted))",
            ).strip()
            state = json.loads((Path(root) / instance_id / "state.json").read_text())
            slug = instance_id.split("-")[1]
            direct, proxied = _export_timings(
                base, token, f"instance-{slug}.localhost", ("127.0.0.1", state["port"]), secret
            )
        finally:  # never leave the benchmark's engine running
            _api(base, token, "DELETE", f"/api/saas/instances/{instance_id}")
    results += [
        Result("export 10k trades, engine directly (median)", direct * 1000, "ms"),
        Result("export 10k trades, through the instance URL (median)", proxied * 1000, "ms"),
        Result("instance URL proxy overhead ratio", proxied / direct, "ratio", "<= 1.5"),
    ]
    return results
