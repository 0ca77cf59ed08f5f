"""The engine: paper-trading throughput (ticks through strategy + matching + accounting, one core),
start to healthy, and idle resident memory."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

from quantmesh_engine.config import parse_config
from quantmesh_engine.exchanges.paper import PaperExchange
from quantmesh_engine.store import Store
from quantmesh_engine.trader import Trader

from bench.common import Result, median

TICKS = 100_000
STARTS = 5


def _throughput() -> tuple[float, int]:
    config = parse_config(
        {"grid": {"price_interval": 90, "order_quote_size": 100, "buy_window": 5, "sell_window": 5, "max_layers": 10}}
    )
    with tempfile.TemporaryDirectory() as directory:
        exchange = PaperExchange(
            seed=11,
            start_price=30000,
            volatility=0.0008,
            tick_seconds=1,
            fee_rate=0.001,
            initial_quote=1_000_000,
            initial_base=0,
        )
        store = Store(Path(directory) / "engine.db")
        trader = Trader(symbol="BTC/USDT", config=config, exchange=exchange, store=store, counters=Counter())

        async def run() -> float:
            await exchange.connect(["BTC/USDT"])
            await trader.start()
            started = time.perf_counter()
            for _ in range(TICKS):
                await trader.step()
            return time.perf_counter() - started

        elapsed = asyncio.run(run())
        fills = trader.position.fills
        store.close()
    return TICKS / elapsed, fills


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_to_healthy() -> tuple[float, float]:
    """Seconds from spawning `python -m quantmesh_engine` to a 200 from /healthz; RSS (MB) when idle."""
    with tempfile.TemporaryDirectory() as directory:
        port = _free_port()
        started = time.monotonic()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "quantmesh_engine",
                "--data-dir",
                directory,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--insecure-no-proxy-secret",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:  # noqa: S310
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.01)
                if time.monotonic() - started > 30:
                    raise RuntimeError("engine did not become healthy in 30 s")
            healthy = time.monotonic() - started
            time.sleep(3)  # idle: trading on paper at its default pace
            rss_kb = int(
                next(
                    line
                    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines()
                    if line.startswith("VmRSS")
                ).split()[1]
            )
        finally:
            process.terminate()
            process.wait(timeout=10)
    return healthy, rss_kb / 1024


def run() -> list[Result]:
    rates = []
    fills = 0
    for _ in range(3):
        rate, fills = _throughput()
        rates.append(rate)
    starts, rss = zip(*(_start_to_healthy() for _ in range(STARTS)), strict=True)
    return [
        Result("engine paper ticks/s (median of 3, 100k ticks)", median(rates), "ticks/s", ">= 20000"),
        Result("engine fills in a 100k-tick run", fills, "count"),
        Result(f"engine start→healthy (median of {STARTS})", median(list(starts)), "s", "<= 1.5 s"),
        Result("engine idle RSS (median)", median(list(rss)), "MB", "<= 80 MB"),
    ]
