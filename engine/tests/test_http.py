"""The engine's HTTP API on a real aiohttp server: proxy-secret auth, status, config, exports, metrics."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import sqlite3
import stat

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer
from engine_testkit import write_platform
from quantmesh_engine.app import Engine
from quantmesh_engine.web import PROXY_SECRET_HEADER, build_app

FAST_PAPER = {
    "paper": {"tick_seconds": 0.01, "volatility": 0.003, "seed": 7},
    "grid": {"price_interval": 100, "order_quote_size": 100},  # 0.33 %: clears the 0.2 % round-trip fee
}


def serve(data_dir, scenario, *, config: dict | None = None, max_pairs: int | None = 5):
    """Run `scenario(session, base_url, engine)` against a live engine serving `data_dir`."""
    secret = write_platform(data_dir, max_pairs=max_pairs)
    (data_dir / "config.yaml").write_text(yaml.safe_dump(config if config is not None else FAST_PAPER))

    async def main():
        engine = Engine(data_dir)
        server = TestServer(build_app(engine), host="127.0.0.1")
        await server.start_server()
        engine.start()
        try:
            async with aiohttp.ClientSession(headers={PROXY_SECRET_HEADER: secret}) as session:
                return await scenario(session, str(server.make_url("")), engine)
        finally:
            await engine.shutdown()
            await server.close()

    return asyncio.run(main())


async def wait_for(predicate, seconds: float = 5.0):
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def test_requests_without_the_proxy_secret_are_refused(data_dir):
    async def scenario(session, base, engine):
        async with aiohttp.ClientSession() as anonymous:
            for path in ["/", "/api/status", "/api/config", "/api/export/trades", "/metrics"]:
                async with anonymous.get(base + path) as response:
                    assert response.status == 401, path
            async with anonymous.get(base + "/api/status", headers={PROXY_SECRET_HEADER: "wrong"}) as response:
                assert response.status == 401
            async with anonymous.get(base + "/healthz") as response:
                assert response.status in (200, 503)  # health is public (the container's own check)
        async with session.get(base + "/api/status") as response:
            assert response.status == 200

    serve(data_dir, scenario)


def test_status_healthz_and_metrics(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.counters["fills_buy"] > 0)
        async with session.get(base + "/api/status") as response:
            status = await response.json()
        assert status["state"] == "running" and status["healthy"] is True
        assert status["instance_id"] == "qm-test01-1700000000"
        assert status["symbols"][0]["symbol"] == "BTC/USDT"
        assert status["last_tick_at"].endswith("Z")
        async with session.get(base + "/healthz") as response:
            assert response.status == 200
        async with session.get(base + "/metrics") as response:
            text = await response.text()
        for name in [
            "price",
            "open_orders",
            "fills_total",
            "volume_quote_total",
            "realized_pnl_quote",
            "unrealized_pnl_quote",
            "position_base",
            "risk_paused",
            "last_heartbeat_timestamp_seconds",
        ]:
            assert f"quantmesh_engine_{name}" in text
        assert 'quantmesh_engine_fills_total{symbol="BTC/USDT"}' in text
        async with session.get(base + "/") as response:
            page = await response.text()
        assert "Open orders" in page and "Recent trades" in page

    serve(data_dir, scenario)


def test_config_put_validates_saves_masks_and_restarts(data_dir):
    async def scenario(session, base, engine):
        bad = {"config": {"grid": {"price_interval": -5}}, "secrets": {}}
        async with session.put(base + "/api/config", json=bad) as response:
            assert response.status == 400
            error = (await response.json())["error"]
        assert error["code"] == "invalid_config"
        assert error["message"] == "grid.price_interval: must be > 0"

        too_many = {"config": {"symbols": ["BTC/USDT", "ETH/USDT"]}}
        async with session.put(base + "/api/config", json=too_many) as response:
            assert "your plan allows 1 trading pair" in (await response.json())["error"]["message"]

        good = {
            "config": {**FAST_PAPER, "symbols": ["ETH/USDT"]},
            "secrets": {"api_key": "AKIAEXAMPLEKEY1234", "secret": "s3cr3t-value-5678"},
        }
        async with session.put(base + "/api/config", json=good) as response:
            assert response.status == 200, await response.text()
            view = await response.json()
        assert view["secrets"]["api_key"] == "****1234"
        assert "s3cr3t" not in str(view)
        mode = stat.S_IMODE(os.stat(data_dir / "secrets.yaml").st_mode)
        assert mode == 0o600
        await wait_for(lambda: engine.traders and engine.traders[0].symbol == "ETH/USDT" and engine.state == "running")

        # A masked value sent back keeps the stored secret.
        async with session.put(base + "/api/config", json={"config": good["config"], "secrets": view["secrets"]}):
            pass
        assert yaml.safe_load((data_dir / "secrets.yaml").read_text())["secret"] == "s3cr3t-value-5678"

        async with session.get(base + "/api/export/config") as response:
            exported = await response.text()
        assert "****5678" in exported and "s3cr3t" not in exported
        assert yaml.safe_load(exported)["config"]["symbols"] == ["ETH/USDT"]

    serve(data_dir, scenario, max_pairs=1)


def test_export_trades_csv_with_filters(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.counters["fills_sell"] > 0, seconds=10)
        async with session.get(base + "/api/export/trades") as response:
            assert response.headers["Content-Type"].startswith("text/csv")
            rows = list(csv.reader(io.StringIO(await response.text())))
        assert rows[0] == [
            "time",
            "symbol",
            "side",
            "price",
            "amount",
            "quote_amount",
            "fee",
            "fee_currency",
            "realized_pnl",
            "client_order_id",
            "grid_level",
        ]
        assert len(rows) > 2
        assert all(r[0].endswith("Z") and "T" in r[0] for r in rows[1:])
        async with session.get(base + "/api/export/trades?symbol=ETH/USDT") as response:
            assert len(list(csv.reader(io.StringIO(await response.text())))) == 1  # header only
        async with session.get(base + "/api/export/trades?since=2999-01-01T00:00:00Z") as response:
            assert len((await response.text()).splitlines()) == 1
        async with session.get(base + "/api/export/trades?until=yesterday") as response:
            assert response.status == 400
            assert (await response.json())["error"]["message"].startswith("until:")

    serve(data_dir, scenario)


def test_backup_database_is_a_consistent_copy_while_trading(data_dir, tmp_path):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.counters["fills_sell"] > 0, seconds=10)
        booked = engine.counters["fills_buy"] + engine.counters["fills_sell"]  # before: it keeps trading
        async with session.get(base + "/api/backup/database") as response:
            assert response.status == 200
            return await response.read(), booked

    snapshot, fills_before = serve(data_dir, scenario)
    copy = tmp_path / "copy.db"
    copy.write_bytes(snapshot)
    db = sqlite3.connect(copy)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT count(*) FROM fills").fetchone()[0] >= fills_before


def test_bad_config_on_disk_keeps_serving_in_error_state(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.state == "error")
        async with session.get(base + "/api/status") as response:
            status = await response.json()
        assert status["error"].startswith("invalid config: grid.max_layers")
        async with session.get(base + "/healthz") as response:
            assert response.status == 503
            assert "invalid config" in (await response.json())["error"]
        async with session.get(base + "/config") as response:
            assert "grid.max_layers" in await response.text()

    serve(data_dir, scenario, config={"grid": {"max_layers": 0}})


def test_live_exchange_without_keys_is_an_error_not_a_crash(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.state == "error")
        assert "no API key for binance" in engine.error

    serve(data_dir, scenario, config={"exchange": {"name": "binance"}})


@pytest.mark.parametrize("body", ["not json", '["list"]', '{"config": {}, "extra": 1}'])
def test_config_put_rejects_malformed_bodies(data_dir, body):
    async def scenario(session, base, engine):
        async with session.put(base + "/api/config", data=body, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400

    serve(data_dir, scenario)
