"""The engine says what it is doing, not only that it is alive: trading, paused by risk control (which
rule), or not trading because of a config error, refused keys or an unreachable exchange."""

from __future__ import annotations

from quantmesh_engine.app import Engine
from quantmesh_engine.exchanges.base import ExchangeError
from quantmesh_engine.exchanges.paper import PaperExchange
from test_http import FAST_PAPER, serve, wait_for


async def status_and_health(session, base):
    async with session.get(base + "/api/status") as response:
        status = await response.json()
    async with session.get(base + "/healthz") as response:
        health = await response.json()
    return status, health


def test_trading_then_paused_by_risk_control_with_the_rule(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.trading_state()[0] == "trading")
        status, health = await status_and_health(session, base)
        assert (status["trading_state"], status["trading_cause"]) == ("trading", "")
        assert health["trading_state"] == "trading"
        await wait_for(lambda: engine.trading_state()[0] == "paused", seconds=20)
        status, _ = await status_and_health(session, base)
        assert status["trading_state"] == "paused" and status["trading_cause"] == "max_position"
        assert "max_position" in status["trading_reason"] and "BTC/USDT" in status["trading_reason"]

    serve(data_dir, scenario, config={**FAST_PAPER, "risk": {"max_position_quote": 150}})


def test_config_error_is_reported_with_its_cause(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.state == "error")
        status, health = await status_and_health(session, base)
        assert (status["trading_state"], status["trading_cause"]) == ("error", "config_error")
        assert status["trading_reason"].startswith("invalid config: grid.max_layers")
        assert (health["trading_state"], health["trading_cause"]) == ("error", "config_error")

    serve(data_dir, scenario, config={"grid": {"max_layers": 0}})


def test_missing_or_refused_keys_are_keys_refused(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.state == "error")
        status, _ = await status_and_health(session, base)
        assert (status["trading_state"], status["trading_cause"]) == ("error", "keys_refused")
        assert "no API key for binance" in status["trading_reason"]

    serve(data_dir, scenario, config={"exchange": {"name": "binance"}})


class UnreachableExchange(PaperExchange):
    """Stands in for a live exchange that cannot be reached (no exchange is reachable from here):
    ccxt's ExchangeNotAvailable arrives in the engine as an ExchangeError, as LiveExchange translates it."""

    async def connect(self, symbols):
        raise ExchangeError("ExchangeNotAvailable: binance GET https://api.binance.com/api/v3/exchangeInfo")


def test_unreachable_exchange_is_reported_and_retried(data_dir, monkeypatch):
    original = Engine._build_exchange

    def build(self, config):
        exchange = original(self, config)
        exchange.__class__ = UnreachableExchange
        return exchange

    monkeypatch.setattr(Engine, "_build_exchange", build)

    async def scenario(session, base, engine):
        await wait_for(lambda: engine.state == "error")
        status, _ = await status_and_health(session, base)
        assert (status["trading_state"], status["trading_cause"]) == ("error", "exchange_unreachable")
        assert "ExchangeNotAvailable" in status["trading_reason"] and "retrying" in status["trading_reason"]

    serve(data_dir, scenario)


def test_trading_view_lists_orders_and_fills(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: len(engine.store.fills(limit=3).fetchall()) >= 3, seconds=20)
        async with session.get(base + "/api/trading?fills=2") as response:
            body = await response.json()
        symbol = body["symbols"][0]
        assert body["trading_state"] in {"trading", "paused"}
        assert len(symbol["fills"]) == 2 and {"time", "side", "price", "amount"} <= set(symbol["fills"][0])
        assert symbol["fills"][0]["time"] >= symbol["fills"][1]["time"]  # newest first
        assert all({"side", "level", "price", "amount"} <= set(order) for order in symbol["orders"])
        for bad in ("0", "501", "many"):
            async with session.get(base + f"/api/trading?fills={bad}") as response:
                assert response.status == 400
                assert (await response.json())["error"]["code"] == "invalid_request"

    serve(data_dir, scenario)
