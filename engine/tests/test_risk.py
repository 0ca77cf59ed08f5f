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


def test_stop_loss_survives_restarts_and_config_saves_until_cleared(tmp_path):
    stop = {"grid": GRID, "risk": {"stop_loss_pct": 2, "rapid_decline": {"enabled": False}}}
    trader, _, store = scripted_trader(tmp_path, [1000, 989, 940] + [945] * 6, stop)
    run_steps(trader, 3)
    assert trader.view.state == "stop_loss"
    # A restart (or a config save, which restarts the traders) with a new trader on the same store:
    saved = dict(stop, grid={**GRID, "order_quote_size": 90})
    again, _, _ = scripted_trader(tmp_path / "again", [945] * 5, saved, store=store)
    run_steps(again, 2)
    assert again.view.state == "stop_loss"
    assert buys(again) == []
    assert again.clear_risk() == ["stop_loss"]
    run_steps(again, 1)
    assert again.view.state == "ok" and len(buys(again)) == 3
    assert store.get_state("risk:BTC/USDT")["stop_loss"] is False


def test_daily_loss_limit_counts_the_whole_instance(tmp_path):
    from collections import Counter

    from quantmesh_engine.config import parse_config
    from quantmesh_engine.risk import DailyLoss, RiskControl
    from quantmesh_engine.store import Store

    store = Store(tmp_path / "engine.db")
    counters = Counter()
    risk = parse_config({"risk": {"daily_loss_limit": 5, "rapid_decline": {"enabled": False}}}).risk
    daily = DailyLoss(risk.daily_loss_limit, store, counters)
    btc = RiskControl(risk, "BTC/USDT", counters, store, daily)
    eth = RiskControl(risk, "ETH/USDT", counters, store, daily)
    flat = {"position_amount": 0.0, "position_cost": 0.0}
    assert btc.evaluate(now=10, price=1, realized_pnl=0, **flat).buys_allowed
    assert eth.evaluate(now=10, price=1, realized_pnl=0, **flat).buys_allowed
    assert btc.evaluate(now=20, price=1, realized_pnl=-3, **flat).buys_allowed  # 3 lost: under the limit
    view = eth.evaluate(now=30, price=1, realized_pnl=-3, **flat)  # 6 lost by the instance
    assert "daily_loss_limit" in view.state
    assert "daily_loss_limit" in btc.evaluate(now=40, price=1, realized_pnl=-3, **flat).state
    assert counters["daily_loss_limit"] == 1
    # Stored: a restart keeps the pause for the rest of the day; the next UTC day lifts it.
    later = RiskControl(risk, "BTC/USDT", Counter(), store, DailyLoss(risk.daily_loss_limit, store, Counter()))
    assert "daily_loss_limit" in later.evaluate(now=50, price=1, realized_pnl=-3, **flat).state
    assert later.evaluate(now=86400 + 5, price=1, realized_pnl=-3, **flat).buys_allowed


def test_rapid_decline_pause_survives_a_restart(tmp_path):
    risk = {"rapid_decline": {"enabled": True, "drop_pct": 5, "window_seconds": 3, "recover_pct": 2}}
    trader, _, store = scripted_trader(tmp_path, [1000, 999, 975, 945], {"grid": GRID, "risk": risk})
    run_steps(trader, 4)
    assert trader.view.state == "rapid_decline"
    again, _, _ = scripted_trader(tmp_path / "again", [946, 947], {"grid": GRID, "risk": risk}, store=store)
    run_steps(again, 2)  # no window of prices after a restart, but the pause holds until the price recovers
    assert again.view.state == "rapid_decline"
