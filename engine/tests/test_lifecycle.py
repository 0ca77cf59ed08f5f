"""The engine as a process: restart without loss, refused keys, SIGTERM, and no Django anywhere."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from aiohttp import web
from engine_testkit import FIXTURES, free_port, start_engine, write_platform
from quantmesh_engine.app import Engine
from quantmesh_engine.exchanges.base import AuthError
from quantmesh_engine.exchanges.live import LiveExchange
from quantmesh_engine.secrets import ExchangeSecrets, SecretStore
from quantmesh_engine.store import Store


def test_restart_loses_nothing(data_dir):
    """Books survive a restart exactly; orders the (restarted) exchange no longer has are repaired."""
    write_platform(data_dir)
    fast = {
        "paper": {"tick_seconds": 0.005, "volatility": 0.004, "seed": 3},
        "grid": {"price_interval": 100},
        "cancel_orders_on_stop": False,
    }
    (data_dir / "config.yaml").write_text(yaml.safe_dump(fast))

    async def first_run():
        engine = Engine(data_dir)
        engine.start()
        while engine.counters["fills_buy"] + engine.counters["fills_sell"] < 6:
            await asyncio.sleep(0.01)
        await engine.shutdown()

    asyncio.run(first_run())
    store = Store(data_dir / "engine.db")
    position = store.position("BTC/USDT")
    books = (position.amount, position.cost, position.realized_pnl, position.fills)
    fills = list(store.fills())
    layers = store.get_state("layers:BTC/USDT")
    left_open = len(store.open_orders("BTC/USDT"))
    store.close()
    assert books[3] == len(fills) >= 6 and left_open > 0

    # Slow ticks now, so the state can be read before a second step trades.
    (data_dir / "config.yaml").write_text(yaml.safe_dump({**fast, "paper": {**fast["paper"], "tick_seconds": 5}}))

    async def second_run():
        engine = Engine(data_dir)
        engine.start()
        while not engine.traders or engine.traders[0].strategy is None:
            await asyncio.sleep(0.005)
        trader = engine.traders[0]
        seen = (trader.position.amount, trader.position.cost, trader.position.realized_pnl, trader.position.fills)
        held = {str(k): v for k, v in trader.strategy.held.items()}
        repairs = engine.counters["reconcile_repairs"]
        rows = len(list(engine.store.fills()))
        await engine.shutdown()
        return seen, held, repairs, rows

    seen, held, repairs, rows = asyncio.run(second_run())
    assert seen == books
    assert held == layers
    assert rows == len(fills)
    assert repairs == left_open  # the paper exchange restarted empty: every resting order was forgotten


def fake_binance(status: int, body: dict):
    """A local server answering every private call the way Binance refuses a bad key."""

    async def handler(request):
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def test_refused_api_key_is_reported_not_crashed():
    port = free_port()

    async def main():
        runner = web.AppRunner(fake_binance(401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions."}))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        import ccxt.async_support as ccxt_async

        client = ccxt_async.binance({"apiKey": "bad-key-0000", "secret": "bad-secret-1111"})
        client.set_markets(list(json.loads((FIXTURES / "markets.json").read_text())["binance"].values()))
        client.urls["api"] = {key: f"http://127.0.0.1:{port}/{key}" for key in client.urls["api"]}
        exchange = LiveExchange(
            "binance", ExchangeSecrets("bad-key-0000", "bad-secret-1111"), testnet=False, client=client
        )
        try:
            await exchange.connect(["BTC/USDT"])
        except AuthError as error:
            message = str(error)
        else:
            message = ""
        finally:
            await exchange.close()
            await runner.cleanup()
        return message

    message = asyncio.run(main())
    assert message.startswith("the exchange rejected the API key")
    assert "bad-secret" not in message and "bad-key" not in message


def test_secrets_never_reach_the_log(data_dir, capfd):
    SecretStore(data_dir, None).save(ExchangeSecrets("KEY-visible-9999", "TOPSECRET-abcdef"))
    (data_dir / "config.yaml").write_text(yaml.safe_dump({"exchange": {"name": "kraken"}}))
    write_platform(data_dir)
    port = free_port()
    process = start_engine(data_dir, port)
    try:
        time.sleep(3)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=10)[0].decode()
    assert "TOPSECRET" not in output and "KEY-visible" not in output
    assert "engine started" in output


def test_subprocess_serves_and_stops_cleanly_on_sigterm(data_dir):
    secret = write_platform(data_dir)
    port = free_port()
    started = time.monotonic()
    process = start_engine(data_dir, port)
    try:
        healthy = False
        while time.monotonic() - started < 15 and not healthy:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    healthy = response.status == 200
            except OSError:
                time.sleep(0.05)
        assert healthy
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/status", headers={"X-QuantMesh-Proxy-Secret": secret}
        )
        with urllib.request.urlopen(request, timeout=2) as response:
            assert json.loads(response.read())["state"] == "running"
    finally:
        stop_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
    output = process.stdout.read().decode()
    assert code == 0
    assert time.monotonic() - stop_at < 5
    lines = [line for line in output.splitlines() if line]
    assert all(line[:4].isdigit() and line[23] == "Z" for line in lines), lines[:3]
    assert "engine stopped" in lines[-1]


def test_engine_never_imports_django():
    code = "import sys, quantmesh_engine.__main__, quantmesh_engine.web; print('django' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": ""},
    )
    assert result.stdout.strip() == "False"


def test_a_temporary_exchange_error_keeps_the_traders(data_dir, monkeypatch):
    """A network error mid-loop pauses and retries; it does not rebuild the traders (nor re-arm risk)."""
    write_platform(data_dir)
    (data_dir / "config.yaml").write_text(
        yaml.safe_dump({"paper": {"tick_seconds": 0.005, "volatility": 0.004}, "grid": {"price_interval": 100}})
    )
    monkeypatch.setattr("quantmesh_engine.app.BACKOFF_START", 0.05)
    from quantmesh_engine.exchanges.base import ExchangeError

    async def main():
        engine = Engine(data_dir)
        engine.start()
        while not engine.traders or engine.traders[0].price is None:
            await asyncio.sleep(0.01)
        trader, exchange = engine.traders[0], engine.exchange
        real = exchange.fetch_price
        failures = iter([True, True])

        async def flaky(symbol):
            if next(failures, False):
                raise ExchangeError("NetworkError: connection reset")
            return await real(symbol)

        exchange.fetch_price = flaky
        while engine.state != "error":
            await asyncio.sleep(0.005)
        assert "exchange error, retrying" in engine.error
        while engine.state != "running":
            await asyncio.sleep(0.01)
        kept = engine.traders == [trader] and engine.exchange is exchange
        await engine.shutdown()
        return kept

    assert asyncio.run(main())


def test_paper_balances_come_from_the_fills_after_kill_9(data_dir):
    """SIGKILL at a random moment: the restarted paper account equals its initial funds plus every fill."""
    write_platform(data_dir)
    (data_dir / "config.yaml").write_text(
        yaml.safe_dump(
            {"paper": {"tick_seconds": 0.002, "volatility": 0.004, "seed": 9}, "grid": {"price_interval": 100}}
        )
    )
    process = start_engine(data_dir, free_port())
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if (data_dir / "engine.db").exists():
                store = Store(data_dir / "engine.db")
                fills = store.position("BTC/USDT").fills
                store.close()
                if fills >= 8:
                    break
        time.sleep(0.37)  # somewhere between two of the old 5 s snapshots
    finally:
        process.kill()
        process.wait(timeout=10)

    async def restored():
        engine = Engine(data_dir)
        engine.config = engine.load_config()
        await engine._connect()
        funds = engine.exchange.funds
        store = engine.store
        await engine._drop_exchange()
        return funds, store

    funds, store = asyncio.run(restored())
    bought = store.db.execute(
        "SELECT COALESCE(SUM(CASE side WHEN 'buy' THEN amount ELSE -amount END), 0), "
        "COALESCE(SUM(CASE side WHEN 'buy' THEN -price * amount ELSE price * amount END) - SUM(fee), 0) FROM fills"
    ).fetchone()
    assert store.position("BTC/USDT").fills >= 8
    assert funds["BTC"] == pytest.approx(bought[0], abs=1e-9)
    assert funds["USDT"] == pytest.approx(10_000 + bought[1], abs=1e-6)
    store.close()


def test_a_csv_replay_resumes_where_it_was(data_dir):
    write_platform(data_dir)
    (data_dir / "prices.csv").write_text("price\n" + "\n".join(str(30000 + i) for i in range(1000)) + "\n")
    (data_dir / "config.yaml").write_text(
        yaml.safe_dump({"paper": {"tick_seconds": 0.005, "prices_csv": "prices.csv"}, "grid": {"price_interval": 100}})
    )

    async def run(ticks: int) -> float:
        engine = Engine(data_dir)
        engine.start()
        while not engine.traders or engine.exchange.feeds["BTC/USDT"].index < ticks:
            await asyncio.sleep(0.005)
        price = engine.traders[0].price
        await engine.shutdown()
        return price

    first = asyncio.run(run(50))
    second = asyncio.run(run(1))
    assert second > first  # the replay went on from where it stopped, not from its first line
