"""The backtester: one strategy over a price path, with the engine's own fills, fees and books.

It is the trader's step without the I/O: the same GridStrategy decides the orders, the same
AdaptiveController moves the grid, orders go to a real PaperExchange (its own checks, matching at
the limit price and fees, through its synchronous calls), fills are booked on a store.Position (the
engine's average-cost accounting) and the risk rules are the engine's RiskControl. What it leaves
out is what a backtest cannot know: the live exchange's latency, queue position and partial fills.
tests/test_backtest.py holds it to the live paper engine's PnL on the same path, to the cent.

Candles become ticks as the price most likely moved inside them: the extreme nearer the open
first (low then high for a rising candle, high then low for a falling one), then the close; the
first candle starts at its open (the others open at the previous close, on a market that trades
around the clock). Ticks on which nothing can happen (no resting order reached, the price still
between the same two levels) skip the strategy; the volatility estimate and the risk rules still
see every tick.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from dataclasses import dataclass

from .adaptive import AdaptiveController
from .config import EngineConfig
from .exchanges.base import Order, OrderRejected
from .exchanges.paper import PaperExchange
from .risk import RiskControl
from .store import Position, Store
from .strategy import GridStrategy

BAND_MARGIN = 1e-9


@dataclass(frozen=True)
class Candle:
    """One OHLCV bar; ts = open time in ms since the epoch (UTC)."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True)
class Metrics:
    pnl_after_fees: float  # quote: realised + unrealised at the last price, every fee paid
    fees: float
    fills: int
    max_drawdown: float  # quote: the largest fall of the PnL from a previous high (at candle closes)
    peak_inventory: float  # quote: the largest position value held (at candle closes)


@dataclass(frozen=True)
class Ticks:
    """A price path: times in seconds, prices, and the index of each candle's close tick."""

    times: list[float]
    prices: list[float]
    closes: list[int]


def candle_ticks(candles: list[Candle]) -> Ticks:
    """The path through each candle (see the module doc), spread evenly over its period."""
    times: list[float] = []
    prices: list[float] = []
    closes: list[int] = []
    for index, candle in enumerate(candles):
        if index + 1 < len(candles):
            period = (candles[index + 1].ts - candle.ts) / 1000
        else:
            period = (candle.ts - candles[index - 1].ts) / 1000 if index else 60.0
        start = candle.ts / 1000
        if not index:
            times.append(start)
            prices.append(candle.open)
        if candle.close >= candle.open:
            path = (candle.low, candle.high, candle.close)
        else:
            path = (candle.high, candle.low, candle.close)
        for step, price in enumerate(path, start=1):
            times.append(start + period * step / 3)
            prices.append(price)
        closes.append(len(prices) - 1)
    return Ticks(times, prices, closes)


@dataclass
class Run:
    metrics: Metrics
    equity: list[tuple[float, float]]  # (time s, PnL in quote) at each candle close
    intervals: list[float]  # the grid interval at each tick (adaptive changes it)
    held_layers: list[int]  # layers held at each tick
    position: Position


class Simulation:
    def __init__(self, config: EngineConfig, *, symbol: str, fee_rate: float, initial_quote: float | None = None):
        self.config = config
        self.symbol = symbol
        self.fee_rate = fee_rate
        grid = config.grid
        # Enough quote for every layer (the customer's balance is not the question a backtest answers).
        enough = 3 * grid.max_layers * grid.order_quote_size
        self.initial_quote = initial_quote if initial_quote is not None else max(config.paper.initial_quote, enough)

    def run(self, ticks: Ticks, *, record: bool = False) -> Run:
        config, symbol, grid = self.config, self.symbol, self.config.grid
        times, prices = ticks.times, ticks.prices
        exchange = PaperExchange(
            seed=0,
            start_price=prices[0],
            volatility=0.0,
            tick_seconds=0.0,
            fee_rate=self.fee_rate,
            initial_quote=self.initial_quote,
            initial_base=0.0,
        )
        _run_now(exchange.connect([symbol]))
        store = Store(":memory:")  # only the risk rules' small state: fills are booked on `position`
        risk = RiskControl(config.risk, symbol, Counter(), store)
        risk_on = _risk_on(config)
        rules = config.risk
        # Only the rapid-decline rule (the default): its view changes only when `declining` flips.
        decline_only = rules.rapid_decline.enabled and (
            rules.max_position_quote is None and rules.stop_loss_pct is None and rules.daily_loss_limit is None
        )
        position = Position(symbol)
        strategy: GridStrategy | None = None
        adaptive = (
            AdaptiveController(config.strategy, fee_rate=self.fee_rate, interval=grid.price_interval)
            if config.strategy.kind == "adaptive"
            else None
        )
        by_key: dict[tuple[str, int], Order] = {}
        sellable: dict[tuple[int, float], bool] = {}  # (level, amount) -> can be sold, until a regrid
        orders: dict[str, Order] = {}
        sequence = 0
        top_level: int | None = None
        state = "ok"
        view_buys, view_budget = True, None
        equity: list[tuple[float, float]] = []
        intervals: list[float] = []
        held_layers: list[int] = []
        peak_pnl = 0.0
        max_drawdown = 0.0
        peak_inventory = 0.0
        closes = iter(ticks.closes)
        next_close = next(closes, -1)
        place, cancel, round_order = exchange.place_limit_now, exchange.cancel_now, exchange.round_order
        post_only = grid.post_only

        def requote(price: float) -> None:
            nonlocal sequence
            dust = []
            for key in strategy.held.items():  # as the trader's _dust: which layers cannot be sold
                if key not in sellable:
                    level, amount = key
                    sellable[key] = round_order(symbol, "sell", strategy.level_price(level + 1), amount) is not None
                if not sellable[key]:
                    dust.append(key[0])
            dust = frozenset(dust)
            wanted = strategy.desired(price, buys_allowed=view_buys, buy_budget=view_budget, dust=dust)
            for key in [key for key in by_key if key not in wanted]:
                order = by_key.pop(key)
                cancel(order)
                orders.pop(order.client_id, None)
            for key, quote in wanted.items():
                if key in by_key:
                    continue
                amount = quote.amount if quote.amount is not None else grid.order_quote_size / quote.price
                rounded = round_order(symbol, quote.side, quote.price, amount)
                if rounded is None:
                    continue
                sequence += 1
                order = Order(f"bt-{sequence}", symbol, quote.side, rounded[0], rounded[1], quote.level)
                try:
                    place(order, post_only=post_only)
                except OrderRejected:
                    continue
                by_key[key] = order
                orders[order.client_id] = order

        low, high = math.inf, -math.inf  # between these, no order fills and the level stays
        trade_at, level_of = exchange.trade_at, None
        view_state = "ok"
        for index, price in enumerate(prices):
            now = times[index]
            quiet = low < price < high
            booked = 0
            if not quiet:
                for fill in trade_at(symbol, price, now):
                    order = orders.pop(fill.client_id, None)
                    position.apply(fill)
                    booked += 1
                    if order is None or order.kind != "limit":
                        continue
                    if by_key.get((order.side, order.level)) is order:
                        del by_key[(order.side, order.level)]
                    if fill.side == "buy":
                        strategy.bought(order.level, fill.amount)  # the paper fee is in quote: all arrived
                    else:
                        strategy.sold(order.level, fill.amount)
                if strategy is None:
                    strategy = GridStrategy(grid, price)
                    level_of = strategy.level_of
            if adaptive is not None:
                decision = adaptive.observe(price, now, len(strategy.held))
                if decision is not None:
                    for order in by_key.values():
                        cancel(order)
                    by_key.clear()
                    orders.clear()
                    strategy.regrid(price, dataclasses.replace(grid, price_interval=decision.interval))
                    sellable.clear()
                    top_level = None
                if adaptive.skew != strategy.skew:
                    strategy.skew = adaptive.skew
                    top_level = None
            if decline_only and quiet:
                declining = risk.declining
                risk.track_decline(now, price)
                evaluate = risk.declining != declining  # else the view is the same as the last tick's
            else:
                evaluate = risk_on
            if evaluate:
                view = risk.evaluate(
                    now=now,
                    price=price,
                    position_amount=position.amount,
                    position_cost=position.cost,
                    realized_pnl=position.realized_pnl,
                    buy_size=grid.order_quote_size,
                )
                if view.stop_loss:
                    if quiet:
                        trade_at(symbol, price, now)  # nothing fills: the price is between the orders
                        quiet = False
                    for order in by_key.values():
                        cancel(order)
                    by_key.clear()
                    orders.clear()
                    rounded = round_order(symbol, "sell", price, position.amount) if position.amount > 0 else None
                    if rounded is not None:
                        sequence += 1
                        market = Order(f"bt-{sequence}", symbol, "sell", 0.0, rounded[1], 0, kind="market")
                        for fill in exchange.place_market_now(market):
                            position.apply(fill)
                    strategy.held.clear()
                    booked += 1
                view_buys, view_budget, view_state = view.buys_allowed, view.buy_budget, view.state
            if not (quiet and top_level is not None and view_state == state):
                if quiet:
                    trade_at(symbol, price, now)  # nothing fills: the price is between the orders
                top = level_of(price)
                if booked or top != top_level or view_state != state:
                    top_level, state = top, view_state
                    requote(price)
                low, high = _quiet_band(strategy, top, by_key)
            if record:
                intervals.append(strategy.config.price_interval)
                held_layers.append(len(strategy.held))
            if index == next_close:
                next_close = next(closes, -1)
                pnl = position.realized_pnl + position.amount * price - position.cost
                equity.append((now, pnl))
                if pnl > peak_pnl:
                    peak_pnl = pnl
                elif peak_pnl - pnl > max_drawdown:
                    max_drawdown = peak_pnl - pnl
                value = position.amount * price
                if value > peak_inventory:
                    peak_inventory = value
        store.close()
        last = prices[-1]
        metrics = Metrics(
            pnl_after_fees=position.realized_pnl + position.amount * last - position.cost,
            fees=position.fees,
            fills=position.fills,
            max_drawdown=max_drawdown,
            peak_inventory=peak_inventory,
        )
        return Run(metrics, equity, intervals, held_layers, position)


def _quiet_band(strategy: GridStrategy, top: int, by_key: dict) -> tuple[float, float]:
    """Prices strictly between which the next tick changes nothing: above every resting buy and the
    current level, below every resting sell and the next level (a hair inside, against rounding)."""
    low = strategy.level_price(top) * (1 + BAND_MARGIN)
    high = strategy.level_price(top + 1) * (1 - BAND_MARGIN)
    for (side, _), order in by_key.items():
        if side == "buy":
            low = max(low, order.price)
        else:
            high = min(high, order.price)
    return low, high


def _risk_on(config: EngineConfig) -> bool:
    """Whether any risk rule can act (else the per-tick evaluation is skipped: it would say "ok")."""
    risk = config.risk
    return bool(
        risk.rapid_decline.enabled
        or risk.max_position_quote is not None
        or risk.stop_loss_pct is not None
        or risk.daily_loss_limit is not None
    )


def _run_now(coroutine):
    """Run a coroutine that never waits (the paper exchange's), without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine waited")


# Per-minute volatility and drift of the synthetic regimes (tests, the benchmark, demonstrations).
REGIMES = {
    "quiet": (0.0004, 0.0),
    "volatile": (0.003, 0.0),
    "up": (0.001, 0.0002),
    "down": (0.001, -0.0002),
}


def synthetic_candles(
    regimes: list[tuple[str, int]], *, seed: int, start_price: float = 30000.0, start_ts: int = 1_700_000_000_000
) -> list[Candle]:
    """One-minute candles of a seeded random walk through `regimes` ((name, minutes) in order), each
    candle built from six sub-steps so its high and low are those of a real path."""
    rng = random.Random(seed)
    candles: list[Candle] = []
    price = start_price
    for name, minutes in regimes:
        volatility, drift = REGIMES[name]
        step_sigma, step_drift = volatility / math.sqrt(6), drift / 6
        for _ in range(minutes):
            open_ = high = low = price
            for _ in range(6):
                price *= math.exp(rng.gauss(step_drift, step_sigma))
                high, low = max(high, price), min(low, price)
            candles.append(Candle(start_ts + 60_000 * len(candles), open_, high, low, price, 1.0))
    return candles
