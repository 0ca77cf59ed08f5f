"""The engine's pages and /metrics under attack: metric injection through a symbol, framing and
sniffing, and a cross-site post of the config form."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families
from test_http import FAST_PAPER, serve, wait_for

# A symbol that closes its label set and starts a platform series (a false alert) on its own line.
INJECTED = 'BTC/USDT"} 1\nquantmesh_instances{state="failed"} 999\n#'


def test_a_symbol_cannot_inject_series_into_metrics(data_dir):
    async def scenario(session, base, engine):
        await wait_for(lambda: engine.state == "error" or engine.last_tick_at)
        async with session.get(base + "/metrics") as response:
            text = await response.text()
        families = list(text_string_to_metric_families(text))
        assert families and all(f.name.startswith("quantmesh_engine_") for f in families), text
        assert "quantmesh_instances" not in text
        assert "paper has no market" in engine.error  # validated against the exchange's markets

    serve(data_dir, scenario, config={**FAST_PAPER, "symbols": ["ETH/USDT", INJECTED]})


def test_label_values_are_escaped():
    from quantmesh_engine.web import label_value

    sample = f'quantmesh_engine_price{{symbol="{label_value(INJECTED)}"}} 1\n'
    (family,) = text_string_to_metric_families(sample)
    assert family.samples[0].labels == {"symbol": INJECTED}
    assert label_value('a\\"b') == 'a\\\\\\"b'


def test_pages_carry_security_headers(data_dir):
    async def scenario(session, base, engine):
        for path in ["/", "/config", "/api/status", "/metrics"]:
            async with session.get(base + path) as response:
                assert response.status == 200, path
                headers = response.headers
                assert headers["X-Frame-Options"] == "DENY", path
                assert headers["X-Content-Type-Options"] == "nosniff", path
                csp = headers["Content-Security-Policy"]
                assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp

    serve(data_dir, scenario)


def test_the_config_form_needs_its_csrf_token(data_dir):
    form = {"exchange": "paper", "symbols": "ETH/USDT", "price_interval": "150", "order_quote_size": "50"}

    async def scenario(session, base, engine):
        # A post from another site: no token (it cannot read the form), or a forged one.
        for extra, headers in [({}, {}), ({"csrf_token": "1.forged"}, {}), ({}, {"Sec-Fetch-Site": "cross-site"})]:
            async with session.post(base + "/config", data={**form, **extra}, headers=headers) as response:
                assert response.status == 403, (extra, headers)
        assert engine.load_config().symbols == ("BTC/USDT",)  # nothing saved
        async with session.get(base + "/config") as response:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await response.text()).group(1)
        async with session.post(
            base + "/config", data={**form, "csrf_token": token}, headers={"Sec-Fetch-Site": "cross-site"}
        ) as response:
            assert response.status == 403  # a real token from a cross-site page is still refused
        async with session.post(base + "/config", data={**form, "csrf_token": token}, allow_redirects=False) as saved:
            assert saved.status == 303
        assert engine.load_config().symbols == ("ETH/USDT",)

    serve(data_dir, scenario)

