"""Orders respect each market's precision, minimum amount and minimum notional, using ccxt's own
rounding on market definitions saved in ccxt's unified shape. Nothing that rounds to zero is sent."""

from __future__ import annotations

import asyncio
import json

import ccxt.async_support as ccxt_async
import pytest
from engine_testkit import FIXTURES
from quantmesh_engine.exchanges.live import LiveExchange
from quantmesh_engine.secrets import ExchangeSecrets

MARKETS = json.loads((FIXTURES / "markets.json").read_text())


@pytest.fixture
def exchange_for():
    made = []

    def make(name: str) -> LiveExchange:
        client = getattr(ccxt_async, name)()
        client.set_markets(list(MARKETS[name].values()))
        exchange = LiveExchange(name, ExchangeSecrets(), testnet=False, client=client)
        exchange.markets = {s: exchange._market(s) for s in MARKETS[name]}
        made.append(client)
        return exchange

    yield make
    for client in made:
        asyncio.run(client.close())


@pytest.mark.parametrize(
    "name, symbol, side, price, amount, expected",
    [
        ("binance", "BTC/USDT", "sell", 30000.129, 0.000234, (30000.13, 0.00023)),  # to the tick; amount truncated
        ("binance", "BTC/USDT", "buy", 30000.129, 0.000234, (30000.12, 0.00023)),  # a buy never rounds up
        ("binance", "BTC/USDT", "buy", 30000.0, 0.00012, None),  # 3.6 USDT < 5 USDT minimum notional
        ("binance", "BTC/USDT", "buy", 30000.0, 0.000004, None),  # rounds to zero
        ("okx", "BTC/USDT", "sell", 30000.17, 0.000123456789, (30000.2, 0.00012345)),
        ("okx", "BTC/USDT", "buy", 30000.17, 0.000123456789, (30000.1, 0.00012345)),
        ("okx", "BTC/USDT", "buy", 30000.0, 0.000009, None),  # below minSz 0.00001
        ("kraken", "ETH/USD", "sell", 2000.555, 0.0025, (2000.56, 0.0025)),
        ("kraken", "ETH/USD", "buy", 2000.0, 0.0019, None),  # below ordermin 0.002
    ],
)
def test_round_order(exchange_for, name, symbol, side, price, amount, expected):
    result = exchange_for(name).round_order(symbol, side, price, amount)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected, rel=1e-12)


def test_paper_market_rounding_never_sends_dust():
    from quantmesh_engine.exchanges.paper import PaperExchange

    paper = PaperExchange(
        seed=1, start_price=30000, volatility=0, tick_seconds=1, fee_rate=0, initial_quote=1000, initial_base=0
    )
    asyncio.run(paper.connect(["BTC/USDT"]))
    assert paper.round_order("BTC/USDT", "buy", 30000.0, 0.0000001) is None
    price, amount = paper.round_order("BTC/USDT", "buy", 29999.987, 0.0033339)  # the paper tick here is 1
    assert price == 29999 and amount == pytest.approx(0.003333)
    assert paper.round_order("BTC/USDT", "sell", 29999.2, 0.0033339)[0] == 30000
