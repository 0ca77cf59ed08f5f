"""The engine's HTTP API on a real aiohttp server: proxy-secret auth, status, config, exports, metrics."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import sqlite3
import stat

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer
from engine_testkit import write_platform
from quantmesh_engine.app import Engine
from quantmesh_engine.strategy import Quote
from quantmesh_engine.web import PROXY_SECRET_HEADER, build_app

FAST_PAPER = {
    "paper": {"tick_seconds": 0.01, "volatility": 0.003, "seed": 7},
    "grid": {"price_interval": 100, "order_quote_size": 100},  # 0.33 %: clears the 0.2 % round-trip fee
}


def serve(data_dir, scenario, *, config: dict | None = None, max_pairs: int | None = 5, adaptive_strategy: bool = True):
    """Run `scenario(session, base_url, engine)` against a live engine serving `data_dir`."""
    secret = write_platform(data_dir, max_pairs=max_pairs, adaptive_strategy=adaptive_strategy)
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


def test_config_that_loses_money_or_orders_under_the_minimum_is_refused_with_the_numbers(data_dir):
    async def scenario(session, base, engine):
        thin = {"config": {**FAST_PAPER, "grid": {"price_interval": 50, "order_quote_size": 100}}}
        async with session.put(base + "/api/config", json=thin) as response:
            assert response.status == 400
            error = (await response.json())["error"]
        assert error["code"] == "invalid_config"
        assert error["message"] == (
            "grid.price_interval: 50 is 0.167% of the BTC/USDT price 30000; a round trip pays 0.200% in fees "
            "(0.100% per order) and needs a 0.050% margin: use at least 75"
        )
        small = {"config": {**FAST_PAPER, "grid": {"price_interval": 100, "order_quote_size": 4}}}
        async with session.put(base + "/api/config", json=small) as response:
            assert response.status == 400
            assert (await response.json())["error"]["message"] == (
                "grid.order_quote_size: 4 USDT is below the exchange's minimum order for BTC/USDT of 5 USDT"
            )
        assert yaml.safe_load((data_dir / "config.yaml").read_text()) == FAST_PAPER  # nothing saved

    serve(data_dir, scenario)


def test_a_thin_grid_found_at_run_time_is_stated_in_healthz(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.state == "error")
        async with session.get(base + "/healthz") as response:
            assert response.status == 503
            body = await response.json()
        assert body["error"].startswith("invalid config: grid.price_interval: 20 is 0.067% of the BTC/USDT price")
        assert engine.store.open_orders("BTC/USDT") == []  # no order went out

    serve(data_dir, scenario, config={**FAST_PAPER, "grid": {"price_interval": 20}})


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: (d / "prices.csv").symlink_to("/proc/sys/kernel/pid_max"), "'prices.csv' leads outside the data"),
        (lambda d: (d / "prices.csv").write_text("price\n30000\nabc\n"), "prices.csv, line 3: 'abc' is not a price"),
        (lambda d: (d / "prices.csv").write_bytes(b"\xff\xfe\x00garbage"), "prices.csv: not a text (CSV) file"),
        (lambda d: None, "there is no file 'prices.csv' in the data directory"),
    ],
)
def test_prices_csv_is_a_good_file_in_the_data_directory(data_dir, make, message):
    make(data_dir)

    async def scenario(session, base, engine):
        config = {"config": {**FAST_PAPER, "paper": {**FAST_PAPER["paper"], "prices_csv": "prices.csv"}}}
        async with session.put(base + "/api/config", json=config) as response:
            assert response.status == 400
            assert message in (await response.json())["error"]["message"]

    serve(data_dir, scenario)


def test_a_bad_prices_file_on_disk_is_an_error_state_and_later_saves_work(data_dir):
    (data_dir / "prices.csv").write_text("price\n30000\n30100\nnot-a-price\n")

    async def scenario(session, base, engine):
        await wait_for(lambda: engine.state == "error")
        assert "prices.csv, line 4: 'not-a-price' is not a price" in engine.error
        for _ in range(2):
            async with session.put(base + "/api/config", json={"config": FAST_PAPER}) as response:
                assert response.status == 200, await response.text()
        await wait_for(lambda: engine.state == "running")

    serve(data_dir, scenario, config={**FAST_PAPER, "paper": {**FAST_PAPER["paper"], "prices_csv": "prices.csv"}})


def test_risk_stops_are_cleared_by_the_customer(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.traders and engine.traders[0].strategy is not None)
        engine.store.set_state("risk:BTC/USDT", {"stop_loss": True, "rapid_decline": False, "decline_low": 0.0})
        await engine.restart()  # as after a crash: the stored stop holds
        await wait_for(lambda: engine.traders and engine.traders[0].view.state == "stop_loss")
        async with session.get(base + "/healthz") as response:
            assert "buying paused by risk control (stop_loss)" in (await response.json())["warnings"][0]
        async with session.get(base + "/config") as response:
            page = await response.text()
        assert 'action="/risk/clear"' in page and "BTC/USDT: stop_loss" in page
        async with session.post(base + "/api/risk/clear") as response:
            assert response.status == 200
            assert (await response.json())["cleared"] == ["stop_loss BTC/USDT"]
        await wait_for(lambda: engine.traders[0].view.state == "ok")
        async with session.post(base + "/risk/clear", allow_redirects=False) as response:
            assert response.status == 403  # the page's form carries a CSRF token; a bare post is refused
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        async with session.post(base + "/risk/clear", data={"csrf_token": token}, allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/config"

    serve(data_dir, scenario)


def test_skipped_orders_are_counted_in_metrics_and_stated_in_healthz(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.traders and engine.traders[0].strategy is not None)
        trader = engine.traders[0]
        trader.strategy.held[-50] = 0.00001  # a layer too small to sell (0.3 USDT)...
        trader.strategy.desired = lambda price, **_: {("sell", -49): Quote("sell", -49, 29000.0, 0.00001)}
        trader._top_level = None  # ...whose sell the grid wants now
        await wait_for(lambda: trader.skipped > 0)
        async with session.get(base + "/metrics") as response:
            assert 'quantmesh_engine_orders_skipped_total{symbol="BTC/USDT"}' in await response.text()
        async with session.get(base + "/healthz") as response:
            warnings = (await response.json())["warnings"]
        assert any(
            "order(s) skipped; last: sell of 1e-05 at 29000" in w and "below the exchange's minimum" in w
            for w in warnings
        )

    serve(data_dir, scenario)
