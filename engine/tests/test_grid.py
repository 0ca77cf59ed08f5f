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
