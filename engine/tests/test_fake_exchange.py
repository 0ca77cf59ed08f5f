"""The fake exchange itself, driven by unmodified ccxt: both dialects load markets, trade, cancel and
list trades; wrong signatures are refused like the real exchanges refuse them."""

from __future__ import annotations

import asyncio

import ccxt
import ccxt.async_support as ccxt_async
import pytest
from fake_exchange import FakeExchangeServer, Ledger
from quantmesh_engine.exchanges.live import rebased_urls

KEY, SECRET, PASSPHRASE = "fake-key-0001", "fake-secret-0002", "fake-pass-0003"


@pytest.fixture
def fake():
    server = FakeExchangeServer(Ledger(), api_key=KEY, secret=SECRET, passphrase=PASSPHRASE).start()
    yield server
    server.stop()
    assert not server.unhandled, server.unhandled


def client(exchange_id: str, server: FakeExchangeServer, *, secret: str = SECRET):
    exchange = getattr(ccxt_async, exchange_id)({"apiKey": KEY, "secret": secret, "password": PASSPHRASE})
    exchange.urls["api"] = rebased_urls(exchange.urls["api"], server.url)
    return exchange


@pytest.mark.parametrize("exchange_id", ["binance", "okx"])
def test_ccxt_trades_against_the_fake(fake, exchange_id):
    ledger = fake.ledger

    async def session():
        exchange = client(exchange_id, fake)
        try:
            await exchange.load_markets()
            assert exchange.markets["BTC/USDT"]["limits"]["amount"]["min"] == 0.00001
            ticker = await exchange.fetch_ticker("BTC/USDT")
            assert ticker["last"] == 30000.0
            balance = await exchange.fetch_balance()
            assert balance["total"]["USDT"] == 10000.0

            buy = await exchange.create_order(
                "BTC/USDT", "limit", "buy", 0.01, 29900, {"clientOrderId": "qmbn1x1", "postOnly": True}
            )
            assert [o["clientOrderId"] for o in await exchange.fetch_open_orders("BTC/USDT")] == ["qmbn1x1"]
            assert ledger.orders[buy["id"]].post_only
            crossing = ("BTC/USDT", "limit", "buy", 0.01, 30100, {"clientOrderId": "qmbp1x2", "postOnly": True})
            if exchange_id == "binance":
                with pytest.raises(ccxt.OrderImmediatelyFillable):  # Binance refuses a LIMIT_MAKER that would take
                    await exchange.create_order(*crossing)
            else:  # OKX accepts it and cancels it at once
                canceled = await exchange.create_order(*crossing)
                assert (await exchange.fetch_order(canceled["id"], "BTC/USDT"))["status"] == "canceled"
            assert not ledger.trades

            ledger.set_price(29850)
            trades = await exchange.fetch_my_trades("BTC/USDT")
            listed = [(t["order"], t["price"], t["amount"], t["side"]) for t in trades]
            assert listed == [(buy["id"], 29900, 0.01, "buy")]
            assert trades[0]["fee"] == {"cost": pytest.approx(0.299), "currency": "USDT"}
            assert (await exchange.fetch_order(buy["id"], "BTC/USDT"))["status"] == "closed"
            with pytest.raises(ccxt.OrderNotFound):
                await exchange.cancel_order(buy["id"], "BTC/USDT")

            sell = await exchange.create_order("BTC/USDT", "market", "sell", 0.005, None, {"clientOrderId": "qms0x3"})
            sold = await exchange.fetch_order_trades(sell["id"], "BTC/USDT")
            assert [(t["price"], t["amount"]) for t in sold] == [(29850, 0.005)]
            balance = await exchange.fetch_balance()
            assert balance["total"]["BTC"] == pytest.approx(0.005)
        finally:
            await exchange.close()

    asyncio.run(session())
    assert ledger.balance_change("USDT") == pytest.approx(-299 - 0.299 + 149.25 - 0.14925)


@pytest.mark.parametrize("exchange_id", ["binance", "okx"])
def test_a_wrong_secret_is_refused(fake, exchange_id):
    async def session():
        exchange = client(exchange_id, fake, secret="not-the-secret")
        try:
            with pytest.raises(ccxt.AuthenticationError):
                await exchange.load_markets()  # binance signs its currency list
                await exchange.fetch_balance()
        finally:
            await exchange.close()

    asyncio.run(session())
