"""The exchange is the authority for fills: against a scripted exchange with real exchanges' habits,
every fill is booked exactly once and none is lost on cancel, reconcile, restart or a lost reply."""

from __future__ import annotations

import asyncio

import pytest
from engine_testkit import trader_on
from quantmesh_engine.exchanges.base import ExchangeError
from quantmesh_engine.store import Store
from scripted_exchange import ScriptedExchange


def start(trader) -> None:
    asyncio.run(trader.start())


def steps(trader, count: int) -> None:
    async def go():
        for _ in range(count):
            await trader.step()

    asyncio.run(go())


def resting(exchange: ScriptedExchange, side: str) -> list[float]:
    return sorted(o.price for o in exchange.orders.values() if o.status == "open" and o.side == side)


def client_id_at(trader, side: str, price: float) -> str:
    return next(o.client_id for o in trader.open.values() if o.side == side and o.price == price)


def trade_ids(store: Store) -> list[str]:
    return [row[0] for row in store.db.execute("SELECT trade_id FROM fills ORDER BY id")]


def assert_books_match_the_exchange(trader, exchange: ScriptedExchange) -> None:
    """The engine's position is the exchange's balance change; no trade booked twice or missed."""
    assert trader.position.amount == pytest.approx(exchange.balances_["BTC"], abs=1e-12)
    ids = trade_ids(trader.store)
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(t["id"] for t in exchange.trades)


def test_fill_just_before_cancel_is_booked_not_lost(tmp_path):
    exchange = ScriptedExchange([1000] + [1055] * 6 + [1061] * 6, trade_delay=3)
    trader = trader_on(exchange, tmp_path)
    start(trader)
    steps(trader, 1)
    assert resting(exchange, "buy") == [970, 980, 990]
    filled = client_id_at(trader, "buy", 970)
    exchange.fill(filled)  # filled on the exchange; its trade shows only 3 ticks later
    steps(trader, 1)  # 1055: the window moves up, the buy at 970 is canceled: "order not found"
    assert exchange.calls.count(f"cancel {filled}") >= 1
    assert trader.position.amount == 0  # not booked yet: the exchange has not shown the trade
    assert filled in trader.settling  # ...so it is not forgotten either
    assert trader.store.order(filled).status == "settling"
    steps(trader, 3)
    assert trader.store.order(filled).status == "filled"
    assert trade_ids(trader.store) == [exchange.trades[0]["id"]]
    assert -3 in trader.strategy.held  # a layer, whose sell (980 is under the price) rests post-only at 1060
    steps(trader, 9)
    assert trader.strategy.held == {}
    assert trader.position.realized_pnl == pytest.approx((1060 - 970) * 0.103092 - 0.103092 * (970 + 1060) * 0.001)
    assert_books_match_the_exchange(trader, exchange)


def test_order_gone_from_the_exchange_is_asked_before_it_is_forgotten(tmp_path):
    exchange = ScriptedExchange([1000] + [995] * 6, trade_delay=2)
    trader = trader_on(exchange, tmp_path)
    start(trader)
    steps(trader, 1)
    gone = client_id_at(trader, "buy", 980)
    exchange.fill(gone)
    asyncio.run(trader.reconcile())  # gone from the open orders; its trade not yet reported
    assert gone in trader.settling and trader.store.order(gone).status == "settling"
    steps(trader, 3)
    assert trader.store.order(gone).status == "filled"
    assert trader.strategy.held == {-2: pytest.approx(0.102040)}
    steps(trader, 1)  # its sell (990 is under the price of 995) rests post-only on the next level, 1000
    assert resting(exchange, "sell") == [1000]
    assert_books_match_the_exchange(trader, exchange)


def test_partial_fill_is_booked_once_across_restarts(tmp_path):
    exchange = ScriptedExchange([1000] + [995] * 10)
    trader = trader_on(exchange, tmp_path)
    start(trader)
    steps(trader, 1)
    partly = client_id_at(trader, "buy", 990)
    exchange.fill(partly, amount=0.04)
    steps(trader, 1)
    assert trader.position.amount == pytest.approx(0.04)
    for _ in range(3):  # restart: a new store and trader on the same database; the feed repeats the trade
        trader.store.close()
        trader = trader_on(exchange, tmp_path, store=Store(tmp_path / "engine.db"))
        start(trader)
        steps(trader, 2)
    assert trader.position.fills == 1
    assert trader.position.amount == pytest.approx(0.04)
    assert_books_match_the_exchange(trader, exchange)


def test_fills_missed_while_down_are_booked_at_start_and_become_layers(tmp_path):
    exchange = ScriptedExchange([1000] + [995] * 4)
    trader = trader_on(exchange, tmp_path)
    start(trader)
    steps(trader, 1)
    missed = client_id_at(trader, "buy", 990)
    trader.store.close()  # the engine is down...
    exchange.fill(missed)  # ...while the exchange fills a buy
    trader = trader_on(exchange, tmp_path, store=Store(tmp_path / "engine.db"))
    start(trader)
    assert trader.store.order(missed).status == "filled"
    assert trader.strategy.held == {-1: pytest.approx(100 / 990, abs=1e-6)}
    steps(trader, 1)
    assert resting(exchange, "sell") == [1000]  # the layer's sell, one interval up
    assert_books_match_the_exchange(trader, exchange)


def test_order_whose_reply_was_lost_is_found_and_its_fill_booked(tmp_path):
    exchange = ScriptedExchange([1000] + [995] * 6)
    trader = trader_on(exchange, tmp_path)
    start(trader)
    exchange.fail_after_place = True  # the first buy is placed, but the reply never arrives
    with pytest.raises(ExchangeError):
        steps(trader, 1)
    lost = next(o for o in exchange.orders.values())
    assert trader.store.order(lost.client_id).status == "pending"  # saved before it was sent
    exchange.fill(lost.client_id)
    asyncio.run(trader.reconcile())
    assert trader.store.order(lost.client_id).status == "filled"
    steps(trader, 2)
    assert trader.strategy.held == {-1: pytest.approx(100 / 990, abs=1e-6)}
    assert resting(exchange, "buy") == [970, 980]  # the filled level is not bought twice
    assert_books_match_the_exchange(trader, exchange)


def test_a_level_is_never_placed_twice(tmp_path):
    """Reconcile must recognise our resting orders (3 buys stay 3 buys, not 6, 9, 12)."""
    exchange = ScriptedExchange([1000] * 20)
    trader = trader_on(exchange, tmp_path)
    start(trader)
    for _ in range(4):
        steps(trader, 2)
        asyncio.run(trader.reconcile())
    assert resting(exchange, "buy") == [970, 980, 990]


def test_market_order_without_fills_in_its_reply_is_booked_at_the_real_price(tmp_path):
    exchange = ScriptedExchange([1000, 989, 940, 940, 940, 940], market_reply_has_fills=False, market_trade_delay=2)
    trader = trader_on(exchange, tmp_path, {"risk": {"stop_loss_pct": 2, "rapid_decline": {"enabled": False}}})
    start(trader)
    steps(trader, 3)  # 989 fills 990; 940 fills 980 and 970, and triggers the stop-loss
    market = next(o for o in exchange.orders.values() if o.kind == "market")
    assert trader.position.amount > 0  # the sell's price is not known yet: pending, not guessed
    assert market.client_id in trader.settling
    assert all(row[0] > 0 for row in trader.store.db.execute("SELECT price FROM fills"))
    steps(trader, 3)
    sells = list(trader.store.db.execute("SELECT price, amount FROM fills WHERE side='sell'"))
    assert sells == [(940, pytest.approx(market.amount))]
    assert trader.position.amount == pytest.approx(0, abs=1e-9)
    assert trader.store.order(market.client_id).status == "filled"
    assert exchange.calls.count(f"market {market.client_id}") == 1
    assert_books_match_the_exchange(trader, exchange)


def test_buy_fee_in_the_base_coin_is_netted_from_the_layer(tmp_path):
    exchange = ScriptedExchange([1000, 989, 995, 1001], fee_in_base=True)
    trader = trader_on(exchange, tmp_path)
    start(trader)
    steps(trader, 2)
    bought = 0.10101  # 100 / 990 to the lot
    fee = bought * 0.001
    assert trader.strategy.held == {-1: pytest.approx(bought - fee)}
    sell = next(o for o in exchange.orders.values() if o.side == "sell")
    assert sell.amount <= exchange.balances_["BTC"]  # sellable: the fee's coins are not offered
    steps(trader, 2)
    assert sell.status == "closed"
    assert exchange.balances_["BTC"] >= 0
    assert trader.position.amount == pytest.approx(exchange.balances_["BTC"], abs=1e-6)


def test_partial_buy_below_the_minimum_does_not_block_its_level(tmp_path):
    exchange = ScriptedExchange([1000, 1000, 1000, 989, 1001, 1001], min_cost=5.0)
    trader = trader_on(exchange, tmp_path)
    start(trader)
    steps(trader, 1)
    partly = client_id_at(trader, "buy", 990)
    exchange.fill(partly, amount=0.002)  # 1.98 USDT: too little to sell
    steps(trader, 1)
    assert trader.strategy.held == {-1: pytest.approx(0.002)}
    assert 990 in resting(exchange, "buy")  # the level is still bid for...
    steps(trader, 2)  # ...989 fills the rest: the layers merge into one that sells at 1000
    assert trader.strategy.held == {-1: pytest.approx(0.10101)}
    assert resting(exchange, "sell") == [1000]
    steps(trader, 1)
    assert trader.strategy.held == {}
    assert trader.position.realized_pnl > 0
    assert_books_match_the_exchange(trader, exchange)
