"""Grid behaviour on scripted price paths, through the trader and the paper exchange's matching."""

from __future__ import annotations

import pytest
from engine_testkit import run_steps, scripted_trader


def levels(trader, side):
    return sorted(o.level for o in trader.open.values() if o.side == side)


def test_buys_rest_below_the_price(tmp_path):
    trader, _, _ = scripted_trader(tmp_path, [1000])
    run_steps(trader, 1)
    assert levels(trader, "buy") == [-3, -2, -1]
    assert sorted(o.price for o in trader.open.values()) == [970, 980, 990]
    assert all(o.client_id.startswith(f"qm-b{o.level}-") for o in trader.open.values())


def test_filled_buy_gets_a_sell_one_interval_up_and_the_sell_frees_the_level(tmp_path):
    trader, _, store = scripted_trader(tmp_path, [1000, 985, 1001])
    run_steps(trader, 2)  # 985 fills the buy at 990 (level -1)
    assert trader.strategy.held == {-1: pytest.approx(0.10101)}
    sells = [o for o in trader.open.values() if o.side == "sell"]
    assert [(o.level, o.price, o.amount) for o in sells] == [(0, 1000, pytest.approx(0.10101))]
    assert levels(trader, "buy") == [-4, -3, -2]  # the window followed the price down
    run_steps(trader, 1)  # 1001 fills the sell at 1000
    assert trader.strategy.held == {}
    assert levels(trader, "buy") == [-2, -1, 0]
    sides = [row[2] for row in store.fills()]
    assert sides == ["buy", "sell"]
    assert trader.position.realized_pnl == pytest.approx(0.10101 * 10)


def test_window_moves_up_with_the_price(tmp_path):
    trader, _, _ = scripted_trader(tmp_path, [1000, 1055])
    run_steps(trader, 2)
    assert levels(trader, "buy") == [3, 4, 5]
    assert trader.counters["orders_placed"] == 6


def test_layer_cap(tmp_path):
    trader, _, _ = scripted_trader(
        tmp_path,
        [1000, 989, 979, 969, 959, 949],
        {"grid": {"price_interval": 10, "order_quote_size": 100, "buy_window": 3, "sell_window": 3, "max_layers": 2}},
    )
    run_steps(trader, 6)
    assert len(trader.strategy.held) == 2
    assert levels(trader, "buy") == []  # two layers held: no more buying
    assert len([o for o in trader.open.values() if o.side == "sell"]) == 2


def test_sell_window_keeps_far_sells_off_the_book(tmp_path):
    path = [1000, 989, 979, 969, 959]
    trader, _, _ = scripted_trader(
        tmp_path,
        path,
        {"grid": {"price_interval": 10, "order_quote_size": 100, "buy_window": 5, "sell_window": 2, "max_layers": 10}},
    )
    run_steps(trader, len(path))
    assert len(trader.strategy.held) == 4
    assert levels(trader, "sell") == [-3, -2]  # the two nearest the price


def test_same_seed_same_result(tmp_path):
    from quantmesh_engine.config import parse_config

    results = []
    for run in range(2):
        directory = tmp_path / str(run)
        directory.mkdir()
        trader, exchange, _ = scripted_trader(directory, [30000])
        exchange.feeds["BTC/USDT"].replay = None  # switch to the seeded random walk
        exchange.feeds["BTC/USDT"].volatility = 0.002
        trader.config = parse_config({"grid": {"price_interval": 20, "order_quote_size": 100}})
        run_steps(trader, 500)
        results.append((trader.price, trader.position.fills, round(trader.position.realized_pnl, 9)))
    assert results[0] == results[1]
    assert results[0][1] > 0


JUMP_GRID = {"price_interval": 10, "order_quote_size": 100, "buy_window": 3, "sell_window": 1, "max_layers": 5}


def test_after_a_jump_up_the_layers_below_are_sold_at_their_own_levels(tmp_path):
    path = [1000, 989, 979, 969, 1031, 1031, 1031]
    trader, _, store = scripted_trader(tmp_path, path, {"grid": {**JUMP_GRID, "post_only": False}})
    run_steps(trader, 4)
    assert sorted(trader.strategy.held) == [-3, -2, -1]
    assert levels(trader, "sell") == [-2]  # the sell window holds one sell: 980, nearest to 969
    run_steps(trader, 3)  # 1031 fills it; the other layers' sells (990, 1000) are under the price now
    sells = [row[3] for row in store.fills() if row[2] == "sell"]
    assert sells == [980, 1000, 990]  # the nearest first, each at its own level
    assert trader.strategy.held == {}
    # Each layer earned its interval: 10 per layer times its amount (no fees here).
    assert trader.position.realized_pnl == pytest.approx(10 * (0.10101 + 0.102040 + 0.103092))


def test_after_a_jump_up_post_only_sells_rest_on_the_first_level_above_the_price(tmp_path):
    trader, _, store = scripted_trader(tmp_path, [1000, 989, 979, 969, 1031, 1041, 1051], {"grid": JUMP_GRID})
    run_steps(trader, 5)
    assert [o.price for o in trader.open.values() if o.side == "sell"] == [1040]  # not 1000: that would cross
    run_steps(trader, 2)
    assert [row[3] for row in store.fills() if row[2] == "sell"] == [980, 1040, 1050]
    assert trader.strategy.held == {}
    assert trader.position.realized_pnl == pytest.approx(10 * 0.103092 + 50 * 0.10101 + 70 * 0.102040)


def test_changing_the_interval_re_anchors_the_grid(tmp_path):
    trader, _, store = scripted_trader(tmp_path, [1000, 989, 1003, 1003])
    run_steps(trader, 2)
    assert trader.strategy.held == {-1: pytest.approx(0.10101)}
    config = {"grid": {"price_interval": 20, "order_quote_size": 100, "buy_window": 3, "sell_window": 3}}
    again, exchange, _ = scripted_trader(tmp_path / "again", [1003, 1003], config, store=store)
    exchange.restore(prices={}, replay={}, clock=0, changes=store.balance_changes("paper:"))  # as the engine does
    run_steps(again, 1)
    assert again.strategy.anchor == 1003 and again.strategy.config.price_interval == 20
    assert store.get_state("interval:BTC/USDT") == 20
    assert sorted(o.price for o in again.open.values() if o.side == "buy") == [943, 963, 983]
    # The layer bought at 990 moved to the first new level at or above it (1003 - 20 = 983 < 990 <= 1003):
    # its sell stays at least one new interval above what it cost.
    assert again.strategy.held == {0: pytest.approx(0.10101)}
    assert [o.price for o in again.open.values() if o.side == "sell"] == [1023]


def test_default_config_makes_money_after_fees_on_the_default_paper_path(tmp_path):
    """A day of the default paper market (seed 42, 1 s ticks) with the default grid and fees."""
    import asyncio
    from collections import Counter

    from quantmesh_engine.config import parse_config
    from quantmesh_engine.exchanges.paper import PaperExchange
    from quantmesh_engine.store import Store
    from quantmesh_engine.trader import Trader

    config = parse_config({})
    paper = config.paper
    exchange = PaperExchange.from_config(paper)
    trader = Trader(
        symbol="BTC/USDT", config=config, exchange=exchange, store=Store(tmp_path / "e.db"), counters=Counter()
    )

    async def day():
        await exchange.connect(["BTC/USDT"])
        await trader.start()
        for _ in range(86_400):
            await trader.step()

    asyncio.run(day())
    position = trader.position
    assert position.fills > 100 and position.fees > 0
    assert position.realized_pnl + position.unrealized_pnl(trader.price) > 0
    funds = exchange.total_funds()
    equity = funds["USDT"] + funds["BTC"] * trader.price
    assert equity > paper.initial_quote
