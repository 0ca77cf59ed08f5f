"""The engine enforces the plan's adaptive strategy itself (platform.yaml's `adaptive_strategy`), so a
config write that bypasses the portal's proxy is refused too; and a downgrade that leaves an adaptive
config on disk keeps trading the fixed grid, saying so, instead of stopping."""

from __future__ import annotations

import re

import pytest
import yaml
from quantmesh_engine.config import ConfigError, parse_config
from quantmesh_engine.platform import load_platform
from test_adaptive_http import ADAPTIVE_PAPER
from test_http import serve, wait_for

NOTICE = "adaptive strategy not included in the plan: trading the fixed grid"


def test_parse_refuses_adaptive_without_the_feature_and_names_the_field():
    parse_config({"strategy": {"kind": "adaptive"}})  # no plan (local development, backtests): allowed
    parse_config({"strategy": {"kind": "grid"}}, adaptive_strategy=False)
    with pytest.raises(ConfigError) as caught:
        parse_config({"strategy": {"kind": "adaptive"}}, adaptive_strategy=False)
    assert caught.value.errors == [
        "strategy.kind: adaptive strategy not included in the plan (Adaptive strategy · AI-tuned comes with the "
        "plans that include AI strategy); use kind: grid, or upgrade your plan"
    ]


def test_a_platform_file_without_the_flag_does_not_include_the_feature(tmp_path):
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump({"instance_id": "qm-old001-1700000000", "max_trading_pairs": 5}))
    assert load_platform(path).adaptive_strategy is False  # written by a portal that predates the flag
    path.write_text(yaml.safe_dump({"instance_id": "qm-new001-1700000000", "adaptive_strategy": True}))
    assert load_platform(path).adaptive_strategy is True


def test_a_config_write_selecting_adaptive_is_refused_without_the_feature(data_dir):
    grid = {**ADAPTIVE_PAPER, "strategy": {"kind": "grid"}}

    async def scenario(session, base, engine):
        await wait_for(lambda: engine.state == "running")
        saved = (data_dir / "config.yaml").read_text()
        async with session.put(base + "/api/config", json={"config": ADAPTIVE_PAPER}) as response:
            assert response.status == 400
            error = (await response.json())["error"]
        assert error["code"] == "invalid_config"
        assert error["message"].startswith("strategy.kind: adaptive strategy not included in the plan")
        assert (data_dir / "config.yaml").read_text() == saved  # nothing saved
        # The engine's own form is held to the same rule.
        async with session.get(base + "/config") as response:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await response.text()).group(1)
        form = {"csrf_token": token, "exchange": "paper", "symbols": "BTC/USDT", "strategy_kind": "adaptive"}
        async with session.post(base + "/config", data=form, allow_redirects=False) as response:
            assert response.status == 200  # the form again, with the problem
            assert "strategy.kind: adaptive strategy not included in the plan" in await response.text()
        assert (data_dir / "config.yaml").read_text() == saved
        # An upgrade (the portal rewrites platform.yaml) lets the same write through, without a restart.
        platform = yaml.safe_load((data_dir / "platform.yaml").read_text())
        (data_dir / "platform.yaml").write_text(yaml.safe_dump({**platform, "adaptive_strategy": True}))
        async with session.put(base + "/api/config", json={"config": ADAPTIVE_PAPER}) as response:
            assert response.status == 200, await response.text()
        await wait_for(lambda: engine.traders and engine.traders[0].adaptive is not None, 10)

    serve(data_dir, scenario, config=grid, adaptive_strategy=False)


def test_after_a_downgrade_a_saved_adaptive_config_trades_the_fixed_grid_and_says_so(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.traders and engine.traders[0].price and engine.traders[0].open, 10)
        assert engine.state == "running"
        trader = engine.traders[0]
        assert trader.adaptive is None and trader.strategy.config.price_interval == 100  # grid.price_interval
        async with session.get(base + "/api/status") as response:
            status = await response.json()
        assert status["trading_state"] == "trading"
        assert status["strategy"]["kind"] == "grid" and status["strategy"]["interval"] == 100
        assert status["strategy_notice"] == NOTICE
        async with session.get(base + "/healthz") as response:
            assert NOTICE in (await response.json())["warnings"]
        async with session.get(base + "/") as response:
            assert NOTICE in await response.text()
        async with session.get(base + "/", headers={"Accept-Language": "zh-CN"}) as response:
            assert "套餐不包含自适应策略：按固定网格交易" in await response.text()
        # The saved config is shown as saved, so the portal's downgrade receiver sees it and moves it
        # to the grid; that write is allowed and the notice goes.
        async with session.get(base + "/api/config") as response:
            view = await response.json()
        assert view["config"]["strategy"]["kind"] == "adaptive" and view["adaptive_strategy"] is False
        grid = {**view["config"], "strategy": {**view["config"]["strategy"], "kind": "grid"}}
        async with session.put(base + "/api/config", json={"config": grid}) as response:
            assert response.status == 200, await response.text()
        await wait_for(lambda: engine.state == "running" and engine.traders and engine.traders[0].price)
        async with session.get(base + "/api/status") as response:
            assert (await response.json())["strategy_notice"] is None

    serve(data_dir, scenario, config=ADAPTIVE_PAPER, adaptive_strategy=False)


def test_the_config_page_has_the_strategy_fields_and_saves_them(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.state == "running")
        async with session.get(base + "/config", cookies={"qm_language": "zh-hans"}) as response:
            page = await response.text()
        assert '<option value="adaptive">自适应策略 · AI 调优</option>' in page
        assert "波动率半衰期（秒）" in page and "买单最多下移这么多档" in page and "adaptive-not-in-plan" not in page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form = {
            "csrf_token": token,
            "exchange": "paper",
            "symbols": "BTC/USDT",
            "price_interval": "100",
            "order_quote_size": "100",
            "post_only": "1",
            "strategy_kind": "adaptive",
            "spread": "3",
            "max_skew": "2",
            "halflife_seconds": "",  # empty: keeps what is stored
        }
        async with session.post(base + "/config", data=form, allow_redirects=False) as response:
            assert response.status == 303, await response.text()
        saved = yaml.safe_load((data_dir / "config.yaml").read_text())["strategy"]
        assert (saved["kind"], saved["spread"], saved["max_skew"], saved["halflife_seconds"]) == ("adaptive", 3, 2, 1)
        async with session.post(base + "/config", data={**form, "max_skew": "-1"}) as response:
            assert "strategy.max_skew: must be" in await response.text()  # the config parser's own check
        async with session.get(base + "/config") as response:
            page = await response.text()
        assert '<option value="adaptive" selected>Adaptive strategy · AI-tuned</option>' in page
        assert re.search(r'id="spread" name="spread" value="3(\.0)?"', page)

    serve(data_dir, scenario, config={**ADAPTIVE_PAPER, "strategy": {"kind": "grid", "halflife_seconds": 1}})


def test_without_the_feature_the_adaptive_option_is_disabled_with_the_reason(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.state == "running")
        for cookie, reason in [
            ("en", "Not included in your plan: upgrade to a plan with AI strategy to use it."),
            ("zh-hans", "您的套餐不包含此功能：升级到包含 AI 策略的套餐即可使用。"),
        ]:
            async with session.get(base + "/config", cookies={"qm_language": cookie}) as response:
                page = await response.text()
            assert re.search(r'<option value="grid" selected>[^<]+</option><option value="adaptive" disabled>', page)
            assert reason in page
            assert NOTICE in page or "套餐不包含自适应策略" in page  # the saved adaptive config trades the grid

    serve(data_dir, scenario, config=ADAPTIVE_PAPER, adaptive_strategy=False)
