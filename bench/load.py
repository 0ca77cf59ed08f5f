"""A bounded closed-loop load generator on loopback: N concurrent clients for a fixed time."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from bench.common import percentile


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    error_statuses: Counter = field(default_factory=Counter)  # status -> how many, for a run's report

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
    error_statuses: Counter = Counter()
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
                        error_statuses[response.status] += 1
                        continue
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return LoadResult(len(latencies), errors, elapsed, latencies, error_statuses)


def run_load(make_request: Callable, *, concurrency: int = 50, seconds: float = 10, max_requests: int = 200_000):
    """`make_request(session)` returns an aiohttp request context manager."""
    result = asyncio.run(_load(make_request, concurrency, seconds, max_requests))
    if result.errors:
        print(f"# load: error answers by status {dict(result.error_statuses)}", file=sys.stderr, flush=True)
    return result
