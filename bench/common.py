"""Shared shape of a benchmark result: every bench_*.py module exposes run() -> list[Result]."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    name: str
    figure: float
    unit: str
    target: str = ""  # human-readable target, e.g. ">= 20000" or "<= 250 ms"; empty when informational


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile; samples need not be sorted."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(samples: list[float]) -> float:
    return statistics.median(samples)
