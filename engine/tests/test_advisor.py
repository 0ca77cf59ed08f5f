"""The strategy advisor: CSV candles with line-naming errors, a walk-forward report that is
deterministic for a seed, and the adaptive strategy's guarantees on seeded regimes."""

from __future__ import annotations

import json

import pytest
from quantmesh_engine.adaptive import fee_floor
from quantmesh_engine.advisor import MIN_CANDLES, AdviceReport, Candle, advise, candles_from_csv
from quantmesh_engine.backtest import Simulation, candle_ticks, synthetic_candles
from quantmesh_engine.config import ConfigError, parse_config

FEE = 0.001
HEADER = "ts,open,high,low,close,volume\n"


# --- candles from CSV ---------------------------------------------------------------------------


def test_csv_candles_in_ms_or_iso():
    text = HEADER + "1700000000000,100,101,99,100.5,3\n2023-11-14T22:14:20Z,100.5,102,100,101,0\n"
    assert candles_from_csv(text) == [
        Candle(1700000000000, 100.0, 101.0, 99.0, 100.5, 3.0),
        Candle(1700000060000, 100.5, 102.0, 100.0, 101.0, 0.0),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,open,high,low,close,volume\n1,1,1,1,1,1\n", "line 1: the header must be"),
        (
            HEADER + "1700000000000,100,101,99,100,1\n1700000060000,100,abc,99,100,1\n",
            "line 3: high 'abc' is not a number",
        ),
        (
            HEADER + "1700000000000,100,101,99,100,1\n\n1700000000000,100,101,99,100,1\n",
            "line 4: ts 1700000000000 repeats",
        ),
        (
            HEADER + "1700000060000,100,101,99,100,1\n1700000000000,100,101,99,100,1\n",
            "line 3: ts 1700000000000 is before",
        ),
        (HEADER + "1700000000000,100,101,99,100\n", "line 2: 5 fields, expected 6"),
        (HEADER + "yesterday,100,101,99,100,1\n", "line 2: ts 'yesterday' is neither"),
        (HEADER + "1700000000000,100,99,98,100,1\n", "line 2: high 99 and low 98 must bound"),
        (HEADER + "1700000000000,-1,101,99,100,1\n", "line 2: open must be a positive number"),
        (HEADER + "1700000000000,100,inf,99,100,1\n", "line 2: high must be a positive number"),
        (HEADER, "line 2: no candles"),
    ],
)
def test_csv_errors_name_the_line(text, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        candles_from_csv(text)


def test_csv_rows_are_capped():
    rows = "".join(f"{1700000000000 + 60000 * i},100,101,99,100,1\n" for i in range(100_001))
    with pytest.raises(ValueError, match="^line 100002: more than 100000 candles"):
        candles_from_csv(HEADER + rows)


# --- the walk-forward report ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def candles():
    return synthetic_candles([("quiet", 400), ("volatile", 400), ("down", 200)], seed=5)


@pytest.fixture(scope="module")
def report(candles) -> AdviceReport:
    return advise(candles, config={}, symbol="BTC/USDT", fee_rate=FEE, seed=3)


def test_the_report_is_walk_forward_and_complete(candles, report):
    split = int(len(candles) * 0.7)
    assert report.split_ts == candles[split].ts
    assert {c.kind for c in report.candidates} == {"grid", "adaptive"}
    assert len(report.candidates) >= 50
    best_on_train = max(c.train.pnl_after_fees for c in report.candidates)
    assert report.candidates[report.recommended].train.pnl_after_fees == best_on_train  # chosen on train only
    for candidate in report.candidates:
        assert candidate.equity_curve[0][0] == report.split_ts  # charted on the held-out part
        assert candidate.equity_curve[-1] == (candles[-1].ts, round(candidate.test.pnl_after_fees, 6))
        # every candidate is a config change the engine's normal validation accepts
        data = {"strategy": {k: v for k, v in candidate.strategy.items() if k != "grid"}}
        if "grid" in candidate.strategy:
            data["grid"] = candidate.strategy["grid"]
        assert parse_config(data).strategy.kind == candidate.kind
        if candidate.kind == "grid":  # a fixed grid is never offered under the fee floor
            floor = fee_floor(candles[split - 1].close, FEE)
            assert candidate.strategy["grid"]["price_interval"] >= floor
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data["candidates"][0]) == {"kind", "strategy", "train", "test", "equity_curve"}
    assert set(data["candidates"][0]["test"]) == {"pnl_after_fees", "fees", "fills", "max_drawdown", "peak_inventory"}


def test_the_recommendation_is_deterministic_for_a_seed(candles, report):
    calls = []
    again = advise(candles, config={}, symbol="BTC/USDT", fee_rate=FEE, seed=3, progress=lambda *a: calls.append(a))
    assert again.to_dict() == report.to_dict()
    assert calls[-1] == (len(report.candidates), len(report.candidates))
    other = advise(candles, config={}, symbol="BTC/USDT", fee_rate=FEE, seed=4)
    assert [c.strategy for c in other.candidates] != [c.strategy for c in report.candidates]


def test_bad_input_is_refused(candles):
    with pytest.raises(ValueError, match=f"at least {MIN_CANDLES}"):
        advise(candles[: MIN_CANDLES - 1], config={}, symbol="BTC/USDT", fee_rate=FEE, seed=1)
    with pytest.raises(ConfigError, match="strategy.kind"):
        advise(candles, config={"strategy": {"kind": "magic"}}, symbol="BTC/USDT", fee_rate=FEE, seed=1)


# --- the adaptive strategy on seeded regimes -------------------------------------------------------

ADAPTIVE = {"kind": "adaptive", "spread": 0.5, "horizon_seconds": 900, "recenter_seconds": 300, "max_skew": 2}


@pytest.mark.parametrize("regime", ["quiet", "volatile", "up", "down"])
def test_adaptive_never_under_the_fee_floor_and_inventory_in_bounds(regime):
    candles = synthetic_candles([(regime, 3000)], seed=17)
    ticks = candle_ticks(candles)
    config = parse_config({"strategy": {**ADAPTIVE, "skew_per_layer": 1}, "grid": {"price_interval": 30}})
    run = Simulation(config, symbol="BTC/USDT", fee_rate=FEE).run(ticks, record=True)
    floors = [fee_floor(price, FEE) for price in ticks.prices]
    assert all(interval >= floor for interval, floor in zip(run.intervals, floors, strict=True))
    assert len(set(run.intervals)) > 2  # it did adapt
    grid = config.grid
    assert max(run.held_layers) <= grid.max_layers
    assert run.metrics.peak_inventory <= grid.max_layers * grid.order_quote_size * 1.06  # each layer bought <= size
    assert run.metrics.fills > 0


def test_adaptive_beats_the_fixed_grid_after_fees_on_held_out_quiet_and_volatile_mix():
    """Default adaptive versus the default fixed grid (same orders, layers and fees), on the held-out
    30 % of six seeded quiet/volatile mixes. Measured (fee 0.1 %): adaptive +7.71 against the grid's
    -13.34 quote in total (+21.05), with a lower drawdown on every seed; it loses 3 of the 6 seeds
    (by 1.6 to 16.7 quote), where volatile but mean-reverting stretches paid the fixed grid's many
    round trips (5 to 50 times adaptive's fills) more than adaptive's wider interval saved it: its
    gain is holding less inventory into the falls, not trading more."""
    grid, adaptive = parse_config({}), parse_config({"strategy": {"kind": "adaptive"}})
    results = []
    for seed in range(1, 7):
        candles = synthetic_candles([("quiet", 480), ("volatile", 480)] * 5, seed=seed)
        held_out = candle_ticks(candles[int(len(candles) * 0.7) :])
        results.append(
            (
                Simulation(grid, symbol="BTC/USDT", fee_rate=FEE).run(held_out).metrics,
                Simulation(adaptive, symbol="BTC/USDT", fee_rate=FEE).run(held_out).metrics,
            )
        )
    for seed, (fixed, adapted) in enumerate(results, start=1):
        print(
            f"seed {seed}: grid {fixed.pnl_after_fees:+.2f} dd {fixed.max_drawdown:.1f} fills {fixed.fills}; "
            f"adaptive {adapted.pnl_after_fees:+.2f} dd {adapted.max_drawdown:.1f} fills {adapted.fills}"
        )
    total_fixed = sum(fixed.pnl_after_fees for fixed, _ in results)
    total_adaptive = sum(adapted.pnl_after_fees for _, adapted in results)
    assert total_adaptive > total_fixed + 10
    assert all(adapted.max_drawdown < fixed.max_drawdown for fixed, adapted in results)
