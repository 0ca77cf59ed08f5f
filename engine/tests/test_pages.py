"""The engine's own pages: in the customer's language, numbers people can read, no automatic reload,
a way back to the console, a layout that fits a phone (tables become labelled rows)."""

from __future__ import annotations

import re

from quantmesh_engine.web.forms import config_from_form
from test_http import FAST_PAPER, serve, wait_for


def test_status_and_config_pages_in_chinese_with_readable_numbers(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.traders and engine.traders[0].price and engine.traders[0].open, seconds=10)
        async with session.get(base + "/", headers={"Accept-Language": "zh-CN,zh;q=0.9"}) as response:
            status = await response.text()
        async with session.get(base + "/config", cookies={"qm_language": "zh-hans"}) as response:
            config = await response.text()
        async with session.get(base + "/static/engine.css") as response:
            assert response.status == 200 and response.content_type == "text/css"
        for page in (status, config):
            assert 'lang="zh-hans"' in page and "返回控制台" in page and "https://portal.test/instances/" in page
            assert "<style" not in page and "http-equiv" not in page  # no inline style, no reload every 5 s
            visible = re.sub(r"<[^>]+>|<code>.*?</code>", " ", page)
            for english in ("Status", "Configuration", "Open orders", "Recent trades", "Save and restart", "Price"):
                assert english not in visible, english
        assert "交易中" in status and "当前挂单" in status and "保存并重启" in config
        prices = re.findall(r'data-label="价格">([^<]+)<', status)
        assert prices and all(re.fullmatch(r"[\d,]+\.\d{2}", price) for price in prices)  # not 30095.817744871787
        async with session.get(base + "/") as response:
            assert 'lang="en"' in await response.text()

    serve(data_dir, scenario, config=FAST_PAPER)


def test_an_empty_grid_field_on_the_config_form_keeps_the_stored_value():
    """Clearing a grid field must not silently reset that part of the trading to its default."""
    current = {"grid": {"price_interval": 150, "order_quote_size": 50, "max_layers": 7}, "risk": {}}
    form = {"exchange": "paper", "symbols": "BTC/USDT", "price_interval": "", "order_quote_size": "60"}
    form["max_layers"] = " "
    grid = config_from_form(form, current)["grid"]
    assert (grid["price_interval"], grid["order_quote_size"], grid["max_layers"]) == (150, 60, 7)
