"""Risk control: each rule triggers, pauses buys, is logged and counted, and (where it should) recovers."""

from __future__ import annotations

import logging

import pytest
from engine_testkit import run_steps, scripted_trader

GRID = {"price_interval": 10, "order_quote_size": 100, "buy_window": 3, "sell_window": 3, "max_layers": 5}


def buys(trader):
    return [o for o in trader.open.values() if o.side == "buy"]


def test_rapid_decline_pauses_buys_and_resumes_on_recovery(tmp_path, caplog):
    risk = {"rapid_decline": {"enabled": True, "drop_pct": 5, "window_seconds": 3, "recover_pct": 2}}
    path = [1000, 999, 975, 945]
    trader, _, _ = scripted_trader(tmp_path, path + [950, 966, 970, 975], {"grid": GRID, "risk": risk})
    with caplog.at_level(logging.WARNING):
        run_steps(trader, len(path))
    assert trader.view.state == "rapid_decline"
    assert buys(trader) == []
    assert trader.counters["rapid_decline"] == 1
    assert "risk control triggered: rapid_decline" in caplog.text
    run_steps(trader, 4)  # 966 is 2% above the 945 low, and the 3 s window no longer holds a 5% drop
    assert trader.view.state == "ok"
    assert len(trader.strategy.held) == 3  # 990, 980 and 970 filled on the way down
    assert len(buys(trader)) == 2  # buying again, up to max_layers (5)


def test_max_position_counts_resting_buys(tmp_path):
    """Cap 150 with 100-USDT buys: one buy may rest, not three (which could all fill: 300 > 150)."""
    trader, _, _ = scripted_trader(
        tmp_path,
        [1000, 989, 979],
        {"grid": GRID, "risk": {"max_position_quote": 150, "rapid_decline": {"enabled": False}}},
    )
    run_steps(trader, 1)
    assert [o.price for o in buys(trader)] == [990]
    run_steps(trader, 2)  # 989 fills it: ~100 held, 50 left under the cap, less than one buy
    assert len(trader.strategy.held) == 1
    assert trader.view.state == "max_position"
    assert buys(trader) == []
    assert trader.position.amount * 979 <= 150


def test_stop_loss_closes_the_position_and_stops_buying(tmp_path):
    # 989 fills the buy at 990; 940 fills 980 and 970: average cost 980, 4% under water.
    trader, _, store = scripted_trader(
        tmp_path, [1000, 989, 940], {"grid": GRID, "risk": {"stop_loss_pct": 2, "rapid_decline": {"enabled": False}}}
    )
    run_steps(trader, 3)
    assert trader.counters["stop_loss"] == 1
    assert trader.position.amount == 0
    assert trader.open == {}
    assert trader.view.state == "stop_loss"
    assert [row[2] for row in store.fills()][-1] == "sell"
    assert trader.position.realized_pnl < 0


def test_daily_loss_limit(tmp_path):
    trader, _, _ = scripted_trader(
        tmp_path,
        [1000, 985, 970, 960, 950],
        {"grid": GRID, "risk": {"daily_loss_limit": 5, "rapid_decline": {"enabled": False}}},
    )
    run_steps(trader, 5)
    assert trader.counters["daily_loss_limit"] == 1
    assert "daily_loss_limit" in trader.view.state
    assert buys(trader) == []


@pytest.mark.parametrize("rule", ["rapid_decline", "stop_loss", "daily_loss_limit"])
def test_rules_are_off_by_default_except_rapid_decline(rule):
    from quantmesh_engine.config import parse_config

    risk = parse_config({}).risk
    enabled = {
        "rapid_decline": risk.rapid_decline.enabled,
        "stop_loss": risk.stop_loss_pct is not None,
        "daily_loss_limit": risk.daily_loss_limit is not None,
    }
    assert enabled[rule] is (rule == "rapid_decline")
