"""The backtester is the engine: on the same price path it books what the live paper engine books."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from quantmesh_engine.backtest import Simulation, candle_ticks, synthetic_candles
from quantmesh_engine.config import parse_config
from quantmesh_engine.exchanges.paper import PaperExchange
from quantmesh_engine.store import Store
from quantmesh_engine.trader import Trader

FEE = 0.001
MIX = [("quiet", 300), ("volatile", 300), ("down", 200), ("up", 200)]


def live_paper_pnl(tmp_path, config, ticks, *, initial_quote: float):
    """Drive the real trader on the real paper exchange through `ticks` (replayed from a CSV file,
    one price per loop step, the clock at the same times): its PnL, fees and fills."""
    csv_path = tmp_path / "prices.csv"
    csv_path.write_text("price\n" + "\n".join(repr(p) for p in ticks.prices) + "\n")
    step = ticks.times[1] - ticks.times[0]
    exchange = PaperExchange(
        seed=1,
        start_price=ticks.prices[0],
        volatility=0,
        tick_seconds=step,
        fee_rate=FEE,
        initial_quote=initial_quote,
        initial_base=0,
        csv_path=csv_path,
        start_time=ticks.times[0] - step,
    )
    store = Store(tmp_path / "engine.db")
    trader = Trader(symbol="BTC/USDT", config=config, exchange=exchange, store=store, counters=Counter())

    async def go():
        await exchange.connect(["BTC/USDT"])
        await trader.start()
        for _ in ticks.prices:
            await trader.step()

    asyncio.run(go())
    position = trader.position
    pnl = position.realized_pnl + position.amount * ticks.prices[-1] - position.cost
    store.close()
    return pnl, position.fees, position.fills, trader


ADAPTIVE = {"kind": "adaptive", "spread": 0.5, "horizon_seconds": 900, "recenter_seconds": 300, "max_skew": 2}


@pytest.mark.parametrize(
    ("config_data", "rules"),
    [
        ({"grid": {"price_interval": 100}}, []),
        (
            {"grid": {"price_interval": 80, "max_layers": 4}, "risk": {"rapid_decline": {"drop_pct": 1.0}}},
            ["rapid_decline"],
        ),
        ({"grid": {"price_interval": 120}, "risk": {"max_position_quote": 450, "stop_loss_pct": 3}}, ["stop_loss"]),
        ({"strategy": {**ADAPTIVE, "skew_per_layer": 1}}, []),
    ],
    ids=["grid", "grid-rapid-decline", "grid-max-position-stop-loss", "adaptive"],
)
def test_backtest_pnl_equals_the_live_paper_engine_to_the_cent(tmp_path, config_data, rules):
    candles = synthetic_candles(MIX, seed=11)
    ticks = candle_ticks(candles)
    config = parse_config(config_data)
    simulation = Simulation(config, symbol="BTC/USDT", fee_rate=FEE)
    run = simulation.run(ticks).metrics
    pnl, fees, fills, trader = live_paper_pnl(tmp_path, config, ticks, initial_quote=simulation.initial_quote)
    assert fills > 15  # a path on which the grid really trades...
    assert all(trader.counters[rule] for rule in rules)  # ...and the risk rules act
    if trader.adaptive is not None:
        assert trader.adaptive.last_change is not None  # the adaptive strategy re-centred
    assert run.fills == fills
    assert round(run.pnl_after_fees, 2) == round(pnl, 2)
    assert round(run.fees, 2) == round(fees, 2)


def test_candles_become_a_path_through_their_extremes():
    candles = synthetic_candles([("volatile", 3)], seed=2)
    ticks = candle_ticks(candles)
    first, second = candles[0], candles[1]
    assert ticks.prices[0] == first.open
    rising = first.close >= first.open
    assert ticks.prices[1:4] == ([first.low, first.high] if rising else [first.high, first.low]) + [first.close]
    assert ticks.prices[6] == second.close
    assert ticks.closes == [3, 6, 9]
    assert ticks.times[3] == first.ts / 1000 + 60  # the close at the end of the minute
