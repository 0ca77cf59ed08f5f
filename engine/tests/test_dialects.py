"""The dialect table against what unmodified ccxt really sends, for the 13 exchanges the manual names.

ccxt builds and signs the request offline; the transport (`fetch`) is replaced by one that records
the request and stops there, so nothing leaves the machine. Markets come from a small fixture."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qsl, urlsplit

import ccxt
import ccxt.async_support as ccxt_async
import pytest
from engine_testkit import FIXTURES
from quantmesh_engine.config import EXCHANGE_ALIASES, MANUAL_EXCHANGES
from quantmesh_engine.exchanges.base import Order
from quantmesh_engine.exchanges.dialects import DIALECTS, client_id_for, dialect_for, our_client_id
from quantmesh_engine.exchanges.live import LiveExchange
from quantmesh_engine.secrets import ExchangeSecrets

MARKETS = json.loads((FIXTURES / "dialect_markets.json").read_text())


class RequestCaptured(Exception):
    pass


def _market(exchange, exchange_id: str) -> dict:
    fixture = MARKETS[exchange_id]
    tick_size = exchange.precisionMode == ccxt.TICK_SIZE
    return {
        "id": fixture["id"],
        "symbol": f"BTC/{fixture['quote']}",
        "base": "BTC",
        "quote": fixture["quote"],
        "baseId": "BTC",
        "quoteId": fixture["quote"],
        "type": "spot",
        "spot": True,
        "margin": False,
        "swap": False,
        "future": False,
        "option": False,
        "contract": False,
        "active": True,
        "linear": None,
        "inverse": None,
        "taker": 0.001,
        "maker": 0.001,
        "precision": {"amount": 1e-5 if tick_size else 5, "price": 0.01 if tick_size else 2},
        "limits": {"amount": {"min": 1e-5}, "cost": {"min": 1}, "price": {}},
        "info": fixture["info"],
    }


def captured_request(exchange_id: str, place) -> dict:
    """The parameters of the one request `place(exchange, symbol)` makes ccxt send, merged from the
    URL query and the body (JSON object, OKX's JSON batch list, or form-encoded)."""
    exchange = getattr(ccxt_async, exchange_id)(
        {"apiKey": "k" * 16, "secret": "c2VjcmV0" * 4, "password": "p" * 8, "uid": "1"}
    )
    market = _market(exchange, exchange_id)
    exchange.set_markets([market])
    # Account lookups some exchanges make before an order, answered from options instead.
    exchange.options.update({"enableUnifiedAccount": True, "enableUnifiedMargin": False, "uta": False})
    exchange.accounts = [{"id": "7", "type": "spot", "code": None, "info": {}}]
    captured: dict = {}

    async def fetch(url, method="GET", headers=None, body=None):
        captured.update(url=url, method=method, body=body)
        raise RequestCaptured

    exchange.fetch = fetch

    async def run():
        try:
            await place(exchange, market["symbol"])
        except RequestCaptured:
            pass
        finally:
            await exchange.close()

    asyncio.run(run())
    assert captured, f"{exchange_id}: ccxt sent nothing"
    sent = dict(parse_qsl(urlsplit(captured["url"]).query))
    body = captured["body"]
    if body:
        if body.startswith(("{", "[")):
            decoded = json.loads(body)
            sent.update(decoded[0] if isinstance(decoded, list) else decoded)
        else:
            sent.update(parse_qsl(body))
    return sent


def sent_request(exchange_id: str, params: dict) -> dict:
    """What unmodified ccxt sends for a 0.001 BTC limit buy at 20,000 with `params`."""

    async def place(exchange, symbol):
        await exchange.create_order(symbol, "limit", "buy", 0.001, 20000, params)

    return captured_request(exchange_id, place)


def sent_by_the_live_exchange(exchange_id: str, client_id: str) -> dict:
    """What the engine's LiveExchange makes ccxt send for a post-only grid buy."""

    async def place(exchange, symbol):
        live = LiveExchange(exchange_id, ExchangeSecrets("k" * 16, "s" * 16), testnet=False, client=exchange)
        await live.place_limit(Order(client_id, symbol, "buy", 20000.0, 0.001, level=-3), post_only=True)

    return captured_request(exchange_id, place)


# Where each exchange expects the client id, and how it sees post-only in the request.
EXPECTED = {
    "binance": ("newClientOrderId", lambda r: r.get("type") == "LIMIT_MAKER"),
    "okx": ("clOrdId", lambda r: r.get("ordType") == "post_only"),
    "bybit": ("orderLinkId", lambda r: r.get("timeInForce") == "PostOnly"),
    "bitget": ("clientOid", lambda r: r.get("force") == "post_only"),
    "gate": ("text", lambda r: r.get("time_in_force") == "poc"),
    "htx": ("client-order-id", lambda r: r.get("type") == "buy-limit-maker"),
    "kucoin": ("clientOid", lambda r: r.get("postOnly") is True),
    "kraken": ("cl_ord_id", lambda r: "post" in r.get("oflags", "").split(",")),
    "bitfinex": ("cid", lambda r: bool(int(r.get("flags", 0)) & 4096)),
    "mexc": ("newClientOrderId", lambda r: r.get("type") == "LIMIT_MAKER"),
    "bingx": ("newClientOrderId", lambda r: r.get("timeInForce") == "PostOnly"),
    "deribit": ("label", lambda r: r.get("post_only") == "true"),
    "bitmex": ("clOrdID", lambda r: "ParticipateDoNotInitiate" in r.get("execInst", "")),
}


def test_the_table_covers_every_exchange_the_manual_names():
    manual = {EXCHANGE_ALIASES.get(name.lower(), name.lower()) for name in MANUAL_EXCHANGES}
    assert manual == set(DIALECTS) == set(EXPECTED)


@pytest.mark.parametrize("exchange_id", sorted(EXPECTED))
def test_ccxt_sends_our_client_id_and_post_only_as_the_table_says(exchange_id):
    dialect = dialect_for(exchange_id)
    field, post_only_sent = EXPECTED[exchange_id]
    for side, level, sequence in (("buy", -3, 17), ("sell", 12, 9_999_999), ("buy", 0, 1)):
        client_id = client_id_for(dialect, side=side, level=level, sequence=sequence)
        assert dialect.valid_client_id(client_id)
        assert len(client_id) <= dialect.client_id_max_length

        request = sent_request(exchange_id, {dialect.client_id_param: client_id, "postOnly": True})
        echoed = request[field]
        assert str(echoed) == dialect.client_id_echo_prefix + client_id
        assert our_client_id(dialect, echoed) == client_id
        assert bool(post_only_sent(request)) is dialect.post_only

    plain = sent_request(exchange_id, {dialect.client_id_param: client_id})
    assert not post_only_sent(plain), f"{exchange_id} sent post-only without being asked: {plain}"


@pytest.mark.parametrize("exchange_id", sorted(EXPECTED))
def test_the_live_exchange_sends_our_id_and_post_only_as_the_table_says(exchange_id):
    """The engine's own order path, not only the table: ccxt's `has['createPostOnlyOrder']` is unset
    for htx, kraken, bingx, deribit and bitmex, and must not make the engine drop the flag."""
    dialect = dialect_for(exchange_id)
    field, post_only_sent = EXPECTED[exchange_id]
    client_id = client_id_for(dialect, side="buy", level=-3, sequence=17)
    request = sent_by_the_live_exchange(exchange_id, client_id)
    assert str(request.get(field)) == dialect.client_id_echo_prefix + client_id, request
    assert bool(post_only_sent(request)) is dialect.post_only, f"post-only not sent: {request}"


def test_okx_ids_are_letters_and_digits_only():
    okx = dialect_for("okx")
    for side in ("buy", "sell"):
        for level in (-250, -1, 0, 7):
            client_id = client_id_for(okx, side=side, level=level, sequence=123456)
            assert client_id.isalnum() and client_id.startswith("qm")
            assert our_client_id(okx, client_id) == client_id


def test_bitfinex_ids_are_int45():
    bitfinex = dialect_for("bitfinex")
    client_id = client_id_for(bitfinex, side="sell", level=-999, sequence=10**12 - 1)
    assert client_id.isdigit() and int(client_id) < 2**45


def test_gate_echo_is_recognised_and_foreign_ids_are_not():
    gate = dialect_for("gate")
    client_id = client_id_for(gate, side="buy", level=-4, sequence=31)
    assert our_client_id(gate, "t-" + client_id) == client_id
    assert our_client_id(gate, "t-manual-order") is None
    # An exchange that tags our ids some other way still gives them back.
    binance, okx = dialect_for("binance"), dialect_for("okx")
    assert our_client_id(binance, "t-qm-b-3-17") == "qm-b-3-17"
    assert our_client_id(okx, "t-qmbn3x17") == "qmbn3x17"
    assert our_client_id(okx, "xqmbn3x17") is None  # no separator: someone else's id
    assert our_client_id(gate, None) is None
    assert our_client_id(binance, "x-TKT5PX2F1a2b3c4d5e6f") is None  # ccxt's own generated ids
    assert our_client_id(binance, "web_5f2a9c") is None  # placed by hand on the website


def test_unknown_exchange_gets_a_conservative_default():
    default = dialect_for("someexchange")
    assert default.post_only is False
    client_id = client_id_for(default, side="buy", level=-2, sequence=5)
    assert client_id.isalnum() and len(client_id) <= default.client_id_max_length
    assert our_client_id(default, client_id) == client_id
