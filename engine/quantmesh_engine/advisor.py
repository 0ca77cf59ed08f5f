"""The strategy advisor: backtest candidate strategies on recent prices, walk-forward, recommend one.

Candidates of both kinds come from the instance's own config: fixed grids at multiples of the fee
floor (and the configured interval), adaptive strategies around its adaptive settings plus a seeded
random search. Each runs on the earlier part of the candles (train: the choice is made there) and,
afresh, on the later part (test: what is reported and charted), so the recommendation is judged on
prices it was not chosen on. Runs use the engine's own fills, fees and books (backtest.Simulation).
The interface is fixed with the portal (see the portal's strategies app); it is deterministic for
(candles, config, symbol, fee_rate, seed).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from .adaptive import fee_floor
from .backtest import Candle, Metrics, Simulation, candle_ticks
from .config import parse_config

__all__ = [
    "AdviceReport",
    "Candle",
    "CandidateResult",
    "Metrics",
    "advise",
    "candidates_for",
    "candles_from_csv",
]

MIN_CANDLES = 500
MAX_CSV_ROWS = 100_000
CSV_HEADER = ("ts", "open", "high", "low", "close", "volume")
GRID_MULTIPLES = (1.1, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0)  # of the fee floor
ADAPTIVE_CANDIDATES = 39  # with the configured adaptive settings and the grids: 50 candidates
EQUITY_POINTS = 500  # per held-out curve, at most
SIM_SYMBOL = "BASE/QUOTE"  # the paper market the runs trade on (any customer symbol is fine)


@dataclass(frozen=True)
class CandidateResult:
    kind: str  # "grid" | "adaptive"
    strategy: dict  # the `strategy:` section that applies it; a grid candidate carries `grid: {price_interval}`
    train: Metrics
    test: Metrics
    equity_curve: list[tuple[int, float]]  # (ts ms, PnL in quote since the held-out part began)


@dataclass(frozen=True)
class AdviceReport:
    candidates: list[CandidateResult]
    recommended: int
    split_ts: int
    fee_rate: float
    seed: int

    def to_dict(self) -> dict:
        return {
            "candidates": [
                {
                    "kind": c.kind,
                    "strategy": c.strategy,
                    "train": asdict(c.train),
                    "test": asdict(c.test),
                    "equity_curve": [[ts, value] for ts, value in c.equity_curve],
                }
                for c in self.candidates
            ],
            "recommended": self.recommended,
            "split_ts": self.split_ts,
            "fee_rate": self.fee_rate,
            "seed": self.seed,
        }


# --- candles from a CSV upload ------------------------------------------------------------------


def candles_from_csv(text: str) -> list[Candle]:
    """Candles from CSV text with the header ts,open,high,low,close,volume (ts in ms since the epoch
    or ISO-8601). Raises ValueError("line N: ...") naming the first bad line."""
    rows = csv.reader(io.StringIO(text))
    try:
        header = next(rows, None)
    except csv.Error as error:
        raise ValueError(f"line 1: not valid CSV ({error})") from None
    if header is None or tuple(cell.strip().lower() for cell in header) != CSV_HEADER:
        got = ",".join(header or [])[:80]
        raise ValueError(f"line 1: the header must be {','.join(CSV_HEADER)}, got {got!r}")
    candles: list[Candle] = []
    line = 1
    try:
        for line, row in enumerate(rows, start=2):  # noqa: B007 (line is read in the except below)
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(candles) >= MAX_CSV_ROWS:
                raise ValueError(f"line {line}: more than {MAX_CSV_ROWS} candles")
            candle = _candle(row, line)
            if candles and candle.ts <= candles[-1].ts:
                what = "repeats" if candle.ts == candles[-1].ts else "is before"
                raise ValueError(
                    f"line {line}: ts {candle.ts} {what} the previous line's; candles must be in time order"
                )
            candles.append(candle)
    except csv.Error as error:
        raise ValueError(f"line {line}: not valid CSV ({error})") from None
    if not candles:
        raise ValueError("line 2: no candles after the header")
    return candles


def _candle(row: list[str], line: int) -> Candle:
    if len(row) != len(CSV_HEADER):
        raise ValueError(f"line {line}: {len(row)} fields, expected {len(CSV_HEADER)} ({','.join(CSV_HEADER)})")
    ts = _timestamp(row[0].strip(), line)
    values = []
    for name, cell in zip(CSV_HEADER[1:], row[1:], strict=True):
        try:
            value = float(cell)
        except ValueError:
            raise ValueError(f"line {line}: {name} {cell.strip()[:40]!r} is not a number") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and name != "volume"):
            raise ValueError(f"line {line}: {name} must be a positive number, got {cell.strip()[:40]!r}")
        values.append(value)
    open_, high, low, close, volume = values
    if high < max(open_, close, low) or low > min(open_, close):
        raise ValueError(f"line {line}: high {high:g} and low {low:g} must bound open {open_:g} and close {close:g}")
    return Candle(ts, open_, high, low, close, volume)


def _timestamp(cell: str, line: int) -> int:
    if cell.isdigit():
        return int(cell)
    try:
        moment = datetime.fromisoformat(cell.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"line {line}: ts {cell[:40]!r} is neither milliseconds since the epoch nor ISO-8601"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


# --- candidates and the walk-forward -----------------------------------------------------------


def candidates_for(config_data: dict, *, price: float, fee_rate: float, seed: int) -> list[dict]:
    """The candidates' `strategy:` patches: grids at multiples of the fee floor at `price` (and the
    configured interval), the configured adaptive settings, and a seeded search around them."""
    config = parse_config(config_data)
    floor = fee_floor(price, fee_rate)
    intervals = sorted({_round_interval(floor * m) for m in GRID_MULTIPLES} | {config.grid.price_interval})
    patches: list[dict] = [
        {"kind": "grid", "grid": {"price_interval": interval}} for interval in intervals if interval >= floor
    ]
    base = dataclasses.replace(config.strategy, kind="adaptive")
    patches.append(asdict(base))
    rng = random.Random(seed)
    for _ in range(ADAPTIVE_CANDIDATES):
        patches.append(
            asdict(
                dataclasses.replace(
                    base,
                    spread=round(rng.uniform(0.5, 5.0), 2),
                    halflife_seconds=float(rng.choice((600, 1800, 3600, 7200, 14400))),
                    horizon_seconds=float(rng.choice((900, 3600, 14400))),
                    skew_per_layer=round(rng.uniform(0.0, 1.0), 2),
                    max_skew=rng.randint(0, 4),
                    recenter_seconds=float(rng.choice((300, 900, 1800, 3600))),
                    min_change_pct=float(rng.choice((10, 20, 35))),
                )
            )
        )
    return patches


def _round_interval(value: float) -> float:
    """Four significant digits, rounded up (a grid at 1.1 x the floor stays above it)."""
    digits = 3 - math.floor(math.log10(value))
    scale = 10.0**digits
    return math.ceil(value * scale) / scale


def _config_for(config_data: dict, patch: dict):
    """The engine config with a candidate applied, validated the normal way."""
    data = {**config_data}
    patch = dict(patch)
    grid_values = patch.pop("grid", None)
    data["strategy"] = patch
    if grid_values:
        data["grid"] = {**(data.get("grid") or {}), **grid_values}
    return parse_config(data)


def advise(
    candles: list[Candle],
    *,
    config: dict,
    symbol: str,
    fee_rate: float,
    seed: int,
    train_fraction: float = 0.7,
    progress: Callable[[int, int], None] | None = None,
) -> AdviceReport:
    """Backtest every candidate on the train part and on the held-out part; recommend the best on
    train (PnL after fees; less drawdown breaks a tie). ValueError on bad input."""
    if len(candles) < MIN_CANDLES:
        raise ValueError(f"candles: {len(candles)} given, the advisor needs at least {MIN_CANDLES}")
    if not 0.1 <= train_fraction <= 0.9:
        raise ValueError(f"train_fraction: must be between 0.1 and 0.9, got {train_fraction:g}")
    if not 0 <= fee_rate <= 0.1:
        raise ValueError(f"fee_rate: must be between 0 and 0.1, got {fee_rate:g}")
    parse_config(config)  # the instance's config must itself be valid (ConfigError names the field)
    split = int(len(candles) * train_fraction)
    held_out = candles[split:]
    train, test = candle_ticks(candles[:split]), candle_ticks(held_out)
    patches = candidates_for(config, price=candles[split - 1].close, fee_rate=fee_rate, seed=seed)
    results: list[CandidateResult] = []
    for done, patch in enumerate(patches, start=1):
        engine_config = _config_for(config, patch)
        simulation = Simulation(engine_config, symbol=SIM_SYMBOL, fee_rate=fee_rate)
        on_train = simulation.run(train).metrics
        on_test = simulation.run(test)
        results.append(
            CandidateResult(
                kind=patch["kind"],
                strategy=patch,
                train=on_train,
                test=on_test.metrics,
                equity_curve=_thinned(
                    [
                        (candle.ts, round(pnl, 6))
                        for candle, (_, pnl) in zip(candles[split:], on_test.equity, strict=True)
                    ]
                ),
            )
        )
        if progress is not None:
            progress(done, len(patches))
    best = max(range(len(results)), key=lambda i: (results[i].train.pnl_after_fees, -results[i].train.max_drawdown, -i))
    return AdviceReport(results, best, candles[split].ts, fee_rate, seed)


def _thinned(curve: list[tuple[int, float]]) -> list[tuple[int, float]]:
    step = max(1, math.ceil(len(curve) / EQUITY_POINTS))
    thinned = curve[::step]
    if curve and thinned[-1] != curve[-1]:
        thinned.append(curve[-1])
    return thinned
