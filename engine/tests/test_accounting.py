"""PnL with fees, checked against hand-computed figures."""

from __future__ import annotations

import pytest
from engine_testkit import run_steps, scripted_trader
from quantmesh_engine.exchanges.base import Fill
from quantmesh_engine.store import Position


def test_round_trip_with_fees_by_hand(tmp_path):
    trader, exchange, store = scripted_trader(tmp_path, [1000, 985, 1001], fee_rate=0.001)
    run_steps(trader, 3)
    amount = 0.10101  # 100 / 990 truncated to the 0.000001 lot
    buy_fee = 990 * amount * 0.001  # 0.0999999
    sell_fee = 1000 * amount * 0.001  # 0.10101
    expected = 1000 * amount - sell_fee - (990 * amount + buy_fee)  # 101.01 - 0.10101 - 99.9999 - 0.0999999
    assert expected == pytest.approx(0.8090901)
    assert trader.position.realized_pnl == pytest.approx(expected)
    assert trader.position.fees == pytest.approx(buy_fee + sell_fee)
    rows = list(store.fills())
    assert [round(r[5], 9) for r in rows] == [round(buy_fee, 9), round(sell_fee, 9)]
    assert rows[1][7] == pytest.approx(expected)
    # The exchange's balances agree with the books: quote grew by exactly the realised PnL.
    funds = exchange.total_funds()
    assert funds["USDT"] == pytest.approx(100_000 + expected)
    assert funds["BTC"] == pytest.approx(0)


def test_average_cost_and_unrealized():
    position = Position("ETH/USDT")
    position.apply(Fill("a", "ETH/USDT", "buy", 100.0, 1.0, 0.1, "USDT", 0))
    position.apply(Fill("b", "ETH/USDT", "buy", 90.0, 1.0, 0.09, "USDT", 0))
    assert position.amount == 2.0
    assert position.cost == pytest.approx(190.19)
    assert position.unrealized_pnl(95.0) == pytest.approx(190.0 - 190.19)
    realized = position.apply(Fill("c", "ETH/USDT", "sell", 110.0, 1.0, 0.11, "USDT", 0))
    # sold 1 of 2 at an average cost of 95.095: 110 - 0.11 - 95.095
    assert realized == pytest.approx(14.795)
    assert position.amount == 1.0 and position.cost == pytest.approx(95.095)


def test_fee_in_base_currency_is_valued_at_the_fill_price_and_netted_from_the_amount():
    position = Position("BTC/USDT")
    position.apply(Fill("a", "BTC/USDT", "buy", 20000.0, 0.01, 0.00001, "BTC", 0))
    assert position.fees == pytest.approx(0.2)
    # 200 USDT paid, 0.00999 BTC received: the fee left in BTC is not ours to sell.
    assert position.amount == pytest.approx(0.00999)
    assert position.cost == pytest.approx(200.0)
    assert position.unrealized_pnl(20000.0) == pytest.approx(-0.2)  # the fee, as before
    realized = position.apply(Fill("b", "BTC/USDT", "sell", 21000.0, 0.00999, 0.2098, "USDT", 0))
    assert realized == pytest.approx(0.00999 * 21000 - 0.2098 - 200.0)  # 9.58
    assert position.amount == 0
