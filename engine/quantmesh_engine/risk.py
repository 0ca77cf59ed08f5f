"""Risk control for one symbol: rapid-decline pause, maximum position, stop-loss, daily loss limit.

Time comes from the exchange's timestamps, so paper trading is deterministic. Every trigger is
logged and counted (the counters are exported as metrics).
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass

from .config import RiskConfig
from .logs import event

logger = logging.getLogger("quantmesh.risk")
DAY = 86400


@dataclass
class RiskView:
    buys_allowed: bool
    stop_loss: bool  # close the position now
    state: str  # "ok" or the reasons buys are paused, comma-separated


class RiskControl:
    def __init__(self, config: RiskConfig, symbol: str, counters: Counter):
        self.config = config
        self.symbol = symbol
        self.counters = counters
        self.window: deque[tuple[float, float]] = deque()
        self.declining = False
        self.decline_low = 0.0
        self.stopped_out = False
        self.daily_paused_day: int | None = None
        self.day: int | None = None
        self.day_start_equity = 0.0

    def _trigger(self, name: str, **fields) -> None:
        self.counters[name] += 1
        event(logger, logging.WARNING, f"risk control triggered: {name}", symbol=self.symbol, **fields)

    def _resume(self, name: str, **fields) -> None:
        event(logger, logging.INFO, f"risk control cleared: {name}", symbol=self.symbol, **fields)

    def evaluate(
        self, *, now: float, price: float, position_amount: float, position_cost: float, realized_pnl: float
    ) -> RiskView:
        reasons = []
        self._rapid_decline(now, price)
        if self.declining:
            reasons.append("rapid_decline")

        value = position_amount * price
        limit = self.config.max_position_quote
        if limit is not None and value >= limit:
            reasons.append("max_position")

        stop_loss = False
        if (
            self.config.stop_loss_pct is not None
            and not self.stopped_out
            and position_amount > 0
            and position_cost > 0
            and (position_cost - value) / position_cost * 100 >= self.config.stop_loss_pct
        ):
            self.stopped_out = True
            stop_loss = True
            self._trigger("stop_loss", price=f"{price:.8g}", loss=f"{position_cost - value:.2f}")
        if self.stopped_out:
            reasons.append("stop_loss")

        equity = realized_pnl + value - position_cost
        day = int(now // DAY)
        if day != self.day:
            self.day, self.day_start_equity = day, equity
            if self.daily_paused_day is not None:
                self.daily_paused_day = None
                self._resume("daily_loss_limit")
        limit = self.config.daily_loss_limit
        if limit is not None and self.daily_paused_day is None and self.day_start_equity - equity >= limit:
            self.daily_paused_day = day
            self._trigger("daily_loss_limit", loss=f"{self.day_start_equity - equity:.2f}")
        if self.daily_paused_day is not None:
            reasons.append("daily_loss_limit")

        return RiskView(buys_allowed=not reasons, stop_loss=stop_loss, state=",".join(reasons) or "ok")

    def _rapid_decline(self, now: float, price: float) -> None:
        rule = self.config.rapid_decline
        if not rule.enabled:
            return
        window = self.window
        # Keep a monotonic deque of (time, price) with decreasing prices: its head is the window's high.
        while window and window[-1][1] <= price:
            window.pop()
        window.append((now, price))
        while window[0][0] < now - rule.window_seconds:
            window.popleft()
        high = window[0][1]
        drop = (high - price) / high * 100
        if not self.declining and drop >= rule.drop_pct:
            self.declining, self.decline_low = True, price
            self._trigger("rapid_decline", drop_pct=f"{drop:.2f}", high=f"{high:.8g}", price=f"{price:.8g}")
        elif self.declining:
            self.decline_low = min(self.decline_low, price)
            if price >= self.decline_low * (1 + rule.recover_pct / 100) and drop < rule.drop_pct:
                self.declining = False
                self._resume("rapid_decline", price=f"{price:.8g}")
