"""A bounded closed-loop load generator on loopback: N concurrent clients for a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from bench.common import percentile


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)


async def _load(make_request: Callable, concurrency: int, seconds: float, max_requests: int) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client():
            nonlocal errors
            while time.monotonic() < stop_at and len(latencies) + errors < max_requests:
                started = time.perf_counter()
                async with make_request(session) as response:
                    await response.read()
                    if response.status >= 400:
                        errors += 1
                        continue
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return LoadResult(len(latencies), errors, elapsed, latencies)


def run_load(make_request: Callable, *, concurrency: int = 50, seconds: float = 10, max_requests: int = 200_000):
    """`make_request(session)` returns an aiohttp request context manager."""
    return asyncio.run(_load(make_request, concurrency, seconds, max_requests))
