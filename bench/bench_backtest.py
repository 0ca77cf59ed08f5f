"""The strategy advisor's backtester (issue 22): 50+ candidate strategies (fixed grids and adaptive,
walk-forward: each runs on the train part and on the held-out part) over 10,000 one-minute
candles, on one core. Target: <= 10 s. Reports wall and CPU time (median of 3) and ticks/s."""

from __future__ import annotations

import time

from quantmesh_engine.advisor import advise
from quantmesh_engine.backtest import candle_ticks, synthetic_candles

from bench.common import Result, median

CANDLES = 10_000
RUNS = 3


def run() -> list[Result]:
    candles = synthetic_candles([("quiet", 1250), ("volatile", 1250), ("up", 1250), ("down", 1250)] * 2, seed=42)
    walls, cpus = [], []
    candidates = 0
    for _ in range(RUNS):
        wall, cpu = time.perf_counter(), time.process_time()
        report = advise(candles, config={}, symbol="BTC/USDT", fee_rate=0.001, seed=7)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        candidates = len(report.candidates)
    ticks = len(candle_ticks(candles).prices) * candidates  # every candidate sees every tick once
    return [
        Result(
            f"backtest {candidates} candidates x {CANDLES} 1m candles, wall (median of {RUNS})",
            median(walls),
            "s",
            "<= 10 s",
        ),
        Result(
            f"backtest {candidates} candidates x {CANDLES} 1m candles, CPU (median of {RUNS})",
            median(cpus),
            "s",
            "<= 10 s",
        ),
        Result("backtest ticks/s (CPU time, all candidates)", ticks / median(cpus), "ticks/s"),
    ]
