"""The adaptive strategy's controller: what interval and skew the grid should have now, and why.

It only decides; the trader (live) and the backtester apply its decisions to the same GridStrategy,
so the orders, fills and risk rules are the grid's. Three ideas:

- Volatility: an EWMA of squared log returns per second (half-life `halflife_seconds`), so ticks
  at any pace give the same estimate. The wanted interval is `spread` x the volatility over
  `horizon_seconds`, within [fee floor, max_interval_pct]; the fee floor is what a round trip pays
  in fees plus config.MIN_EDGE (the grid's own rule), so the interval never loses money per trip.
- Re-centring (a new interval re-anchors the grid at the price, its orders are replaced) happens
  at most once per `recenter_seconds` and only when the wanted interval differs by
  `min_change_pct`; being under the fee floor (the price rose) overrides both.
- Inventory skew (the Avellaneda-Stoikov reservation price idea, r = s - q*gamma*sigma^2): with q
  layers held, the buys step down `skew_per_layer` levels per layer, at most `max_skew` levels,
  so a long grid buys lower and works its inventory off before adding to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import MIN_EDGE, StrategyConfig

WARMUP_SAMPLES = 20  # price changes seen before the estimate may move the interval


def fee_floor(price: float, fee_rate: float) -> float:
    """The smallest interval whose round trip earns more than its fees (the grid's money rule)."""
    return price * (2 * fee_rate + MIN_EDGE)


@dataclass(frozen=True)
class Decision:
    interval: float
    reason: str


class AdaptiveController:
    def __init__(self, config: StrategyConfig, *, fee_rate: float, interval: float):
        self.config = config
        self.fee_rate = fee_rate
        self.interval = interval
        self.variance = 0.0  # per second, of log returns
        self.samples = 0
        self.skew = 0
        self.last_price: float | None = None
        self.last_time = 0.0
        self.last_change: float | None = None
        self.reason = "warming up: measuring volatility"
        self._decay_log = math.log(0.5) / config.halflife_seconds
        self._min_change = config.min_change_pct / 100
        self._floor_factor = fee_floor(1.0, fee_rate)
        self._max_fraction = config.max_interval_pct / 100
        self._scale = config.spread * math.sqrt(config.horizon_seconds)
        self._dt, self._weight, self._held = 0.0, 0.0, 0

    @property
    def volatility(self) -> float:
        """Volatility over the horizon, as a fraction of the price (sigma * sqrt(horizon))."""
        return math.sqrt(self.variance * self.config.horizon_seconds)

    def observe(self, price: float, now: float, held_layers: int) -> Decision | None:
        """Take one price; a Decision when the grid should re-centre on a new interval now.
        (Called on every tick of every backtest candidate: kept lean.)"""
        last = self.last_price
        if last is not None and now > self.last_time:
            dt = now - self.last_time
            if dt != self._dt:  # ticks usually come at one pace: the weight is computed once
                self._dt, self._weight = dt, 1.0 - math.exp(self._decay_log * dt)
            r = math.log(price / last)
            self.variance += self._weight * (r * r / dt - self.variance)
            self.samples += 1
        self.last_price, self.last_time = price, now
        if held_layers != self._held:
            self._held = held_layers
            self.skew = min(self.config.max_skew, int(self.config.skew_per_layer * held_layers))
        if self.interval < price * self._floor_factor:
            floor = fee_floor(price, self.fee_rate)
            return self._change(max(floor, self._wanted(price, floor)), now, f"under the fee floor {floor:.6g}")
        if self.samples < WARMUP_SAMPLES:
            return None
        if self.last_change is not None and now - self.last_change < self.config.recenter_seconds:
            return None
        floor = price * self._floor_factor  # = fee_floor(price, self.fee_rate)
        wanted = self._wanted(price, floor)
        if abs(wanted / self.interval - 1.0) < self._min_change:
            return None
        return self._change(wanted, now, self._why(price, wanted, floor))

    def _wanted(self, price: float, floor: float) -> float:
        target = self._scale * math.sqrt(self.variance) * price  # spread x volatility over the horizon
        return min(max(target, floor), max(price * self._max_fraction, floor))

    def _why(self, price: float, wanted: float, floor: float) -> str:
        vol = f"volatility {self.volatility:.3%} per {self.config.horizon_seconds:g} s"
        if wanted <= floor * (1 + 1e-9):
            return f"{vol}: interval at the fee floor ({floor / price:.3%} of the price)"
        if wanted >= price * self.config.max_interval_pct / 100 * (1 - 1e-9):
            return f"{vol}: interval at its maximum {self.config.max_interval_pct:g}%"
        return f"{vol}: interval {self.config.spread:g} x volatility ({wanted / price:.3%} of the price)"

    def _change(self, interval: float, now: float, reason: str) -> Decision:
        self.interval, self.last_change, self.reason = interval, now, reason
        return Decision(interval, reason)

    def status(self) -> dict:
        return {
            "kind": "adaptive",
            "volatility": self.volatility,
            "interval": self.interval,
            "skew": self.skew,
            "last_change": self.last_change,
            "reason": self.reason,
        }
