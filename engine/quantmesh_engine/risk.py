"""Risk control: rapid-decline pause, maximum position, stop-loss, daily loss limit.

Time comes from the exchange's timestamps, so paper trading is deterministic. Every trigger is
logged and counted (the counters are exported as metrics). A triggered rule is kept in the
store, so a restart, a config save or a reconnect does not re-arm trading: the stop-loss holds
until the customer clears it (`POST /api/risk/clear`), the daily loss limit until the next UTC
day or a clear, the rapid-decline pause until the price recovers or a clear. The daily loss
limit counts the whole instance: every symbol's loss since the day began, added up.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass

from .config import RiskConfig
from .logs import event
from .store import Store

logger = logging.getLogger("quantmesh.risk")
DAY = 86400
RULES = ("rapid_decline", "stop_loss", "daily_loss_limit")


@dataclass
class RiskView:
    buys_allowed: bool
    stop_loss: bool  # the position must be closed
    state: str  # "ok" or the reasons buys are paused, comma-separated
    buy_budget: float | None = None  # quote that resting and new buys together may commit (None: no cap)


def _trigger(counters: Counter, name: str, symbol: str, **fields) -> None:
    counters[name] += 1
    event(logger, logging.WARNING, f"risk control triggered: {name}", symbol=symbol, **fields)


def _resume(name: str, symbol: str, **fields) -> None:
    event(logger, logging.INFO, f"risk control cleared: {name}", symbol=symbol, **fields)


class DailyLoss:
    """The instance's loss since the UTC day began, over all its symbols (one per engine)."""

    KEY = "risk:daily"

    def __init__(self, limit: float | None, store: Store, counters: Counter):
        self.limit = limit
        self.store = store
        self.counters = counters
        saved = store.get_state(self.KEY, {})
        self.day: int | None = saved.get("day")
        self.start: dict[str, float] = saved.get("start", {})  # each symbol's equity when the day began
        self.paused_day: int | None = saved.get("paused_day")
        self.equity: dict[str, float] = {}

    def _save(self) -> None:
        self.store.set_state(self.KEY, {"day": self.day, "start": self.start, "paused_day": self.paused_day})

    def update(self, *, symbol: str, now: float, equity: float) -> bool:
        """Record a symbol's equity; True while buying is paused for the day."""
        if self.limit is None and self.paused_day is None:
            return False  # no limit: nothing to count (a pause stored under an older limit still holds)
        day = int(now // DAY)
        changed = False
        if self.day is None or day > self.day:
            self.day, self.start, changed = day, {}, True
            if self.paused_day is not None:
                self.paused_day = None
                _resume("daily_loss_limit", "*")
        if symbol not in self.start:
            self.start[symbol], changed = equity, True
        self.equity[symbol] = equity
        loss = sum(start - self.equity.get(s, start) for s, start in self.start.items())
        if self.limit is not None and self.paused_day is None and loss >= self.limit:
            self.paused_day, changed = day, True
            _trigger(self.counters, "daily_loss_limit", symbol, loss=f"{loss:.2f}", limit=f"{self.limit:g}")
        if changed:
            self._save()
        return self.paused_day is not None

    def clear(self) -> None:
        """The customer resumes buying: today's loss counts afresh from now."""
        self.paused_day, self.start = None, dict(self.equity)
        self._save()


class RiskControl:
    def __init__(
        self, config: RiskConfig, symbol: str, counters: Counter, store: Store, daily: DailyLoss | None = None
    ):
        self.config = config
        self.symbol = symbol
        self.counters = counters
        self.store = store
        self.daily = daily or DailyLoss(config.daily_loss_limit, store, counters)
        self.key = f"risk:{symbol}"
        saved = store.get_state(self.key, {})
        self.stopped_out: bool = saved.get("stop_loss", False)
        self.declining: bool = saved.get("rapid_decline", False)
        self.decline_low: float = saved.get("decline_low", 0.0)
        self.window: deque[tuple[float, float]] = deque()

    def _save(self) -> None:
        self.store.set_state(
            self.key,
            {"stop_loss": self.stopped_out, "rapid_decline": self.declining, "decline_low": self.decline_low},
        )

    def clear(self) -> list[str]:
        """The customer clears this symbol's stops; returns the rules that were active."""
        cleared = [name for name, on in (("stop_loss", self.stopped_out), ("rapid_decline", self.declining)) if on]
        self.stopped_out, self.declining, self.decline_low = False, False, 0.0
        self.window.clear()
        self._save()
        for name in cleared:
            _resume(name, self.symbol, by="customer")
        return cleared

    def evaluate(
        self,
        *,
        now: float,
        price: float,
        position_amount: float,
        position_cost: float,
        realized_pnl: float,
        buy_size: float = 0.0,
    ) -> RiskView:
        reasons = []
        self.track_decline(now, price)
        if self.declining:
            reasons.append("rapid_decline")

        value = position_amount * price
        budget = None
        limit = self.config.max_position_quote
        if limit is not None:
            # Resting buys commit money too: the grid bids only what is left under the cap.
            budget = limit - value
            if budget < buy_size:
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
            self._save()
            _trigger(self.counters, "stop_loss", self.symbol, price=f"{price:.8g}", loss=f"{position_cost - value:.2f}")
        if self.stopped_out:
            reasons.append("stop_loss")
            stop_loss = position_amount > 0  # until the position is gone (also after a restart mid-close)

        if self.daily.update(symbol=self.symbol, now=now, equity=realized_pnl + value - position_cost):
            reasons.append("daily_loss_limit")

        return RiskView(
            buys_allowed=not reasons, stop_loss=stop_loss, state=",".join(reasons) or "ok", buy_budget=budget
        )

    def track_decline(self, now: float, price: float) -> None:
        """The rapid-decline rule's part of evaluate: it must see every price (its window's high).
        Calling it again with the same price and time changes nothing. The backtester calls it alone
        on ticks where nothing else can change, and evaluate when `declining` flips."""
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
            self._save()
            _trigger(
                self.counters,
                "rapid_decline",
                self.symbol,
                drop_pct=f"{drop:.2f}",
                high=f"{high:.8g}",
                price=f"{price:.8g}",
            )
        elif self.declining:
            if price < self.decline_low:
                self.decline_low = price
                self._save()
            if price >= self.decline_low * (1 + rule.recover_pct / 100) and drop < rule.drop_pct:
                self.declining = False
                self._save()
                _resume("rapid_decline", self.symbol, price=f"{price:.8g}")
