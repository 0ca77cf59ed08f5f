"""The adaptive strategy in a running engine: /api/status says what it does and why; /api/candles
gives the advisor its prices (the paper exchange's path here; ccxt's fetch_ohlcv when live)."""

from __future__ import annotations

import aiohttp
from quantmesh_engine.advisor import Candle
from test_http import serve, wait_for

ADAPTIVE_PAPER = {
    "paper": {"tick_seconds": 0.02, "volatility": 0.003, "seed": 7},
    "grid": {"price_interval": 100, "order_quote_size": 100},
    "strategy": {"kind": "adaptive", "halflife_seconds": 1, "horizon_seconds": 1, "recenter_seconds": 0.5},
}


def test_status_reports_the_adaptive_strategy_and_why(data_dir):
    async def scenario(session: aiohttp.ClientSession, base: str, engine):
        await wait_for(
            lambda: engine.traders and engine.traders[0].adaptive and engine.traders[0].adaptive.samples > 25, 30
        )
        await wait_for(lambda: engine.traders[0].adaptive.last_change is not None, 30)
        async with session.get(base + "/api/status") as response:
            status = await response.json()
        strategy = status["strategy"]
        assert set(strategy) == {"kind", "volatility", "interval", "skew", "last_change", "reason"}
        assert strategy["kind"] == "adaptive" and strategy["volatility"] > 0
        trader = engine.traders[0]
        assert strategy["interval"] == trader.strategy.config.price_interval  # what the grid trades now
        assert strategy["interval"] >= trader.price * (2 * 0.001 + 0.0005) * 0.9  # the fee floor (price moves)
        assert "volatility" in strategy["reason"] or "fee floor" in strategy["reason"]
        assert status["symbols"][0]["strategy"]["kind"] == "adaptive"
        async with session.get(base + "/") as response:
            page = await response.text()
        assert "Adaptive strategy" in page and strategy["reason"].split(":")[0] in page

    serve(data_dir, scenario, config=ADAPTIVE_PAPER)


def test_status_of_a_grid_says_grid(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.traders and engine.traders[0].price)
        async with session.get(base + "/api/status") as response:
            status = await response.json()
        assert status["strategy"] == {
            "kind": "grid",
            "volatility": None,
            "interval": 100,
            "skew": 0,
            "last_change": None,
            "reason": "fixed interval (grid.price_interval)",
        }

    serve(data_dir, scenario, config={**ADAPTIVE_PAPER, "strategy": {"kind": "grid"}})


def test_candles_from_the_paper_path(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.traders and engine.traders[0].price)
        async with session.get(base + "/api/candles?symbol=BTC/USDT&timeframe=1m&limit=600") as response:
            assert response.status == 200
            body = await response.json()
        assert body["symbol"] == "BTC/USDT" and body["timeframe"] == "1m" and body["source"] == "paper"
        candles = [Candle(*row) for row in body["candles"]]
        assert len(candles) == 600
        assert all(b.ts - a.ts == 60_000 for a, b in zip(candles, candles[1:], strict=False))
        assert all(c.low <= min(c.open, c.close) and c.high >= max(c.open, c.close) for c in candles)
        for query, field in [
            ("timeframe=7m", "timeframe"),
            ("limit=10001", "limit"),
            ("limit=x", "limit"),
            ("symbol=ETH/USDT", "symbol"),
        ]:
            async with session.get(base + "/api/candles?" + query) as response:
                assert response.status == 400
                error = (await response.json())["error"]
                assert error["message"].startswith(field) and field in error["details"]

    serve(data_dir, scenario, config=ADAPTIVE_PAPER)
