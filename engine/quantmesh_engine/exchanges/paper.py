"""The paper exchange: a deterministic simulated market with a matching engine.

Prices follow a seeded random walk (or replay a CSV of prices); resting limit orders fill at
their limit price when the price reaches them, fees are charged in the quote currency and
balances are tracked. The simulated clock advances one tick per price fetch, so the same seed
always gives the same prices, fills and PnL. After a restart the balances are derived from the
engine's stored paper fills (`restore`), so nothing drifts, however the process ended.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import heapq
import math
import random
import re
import uuid
from collections import OrderedDict
from itertools import count
from pathlib import Path

from ..config import PaperConfig
from .base import Exchange, Fill, FillBatch, Market, Order, OrderRejected, OrderReport

# Every paper trade id starts with this: the paper account's balances are derived from these fills.
TRADE_PREFIX = "paper:"
CLOSED_ORDERS_KEPT = 10_000  # like a real exchange's order history, the paper one is finite
PAPER_MIN_COST = 5.0  # the paper market's minimum order value, in quote
CANDLE_SUBSTEPS = 12  # random-walk steps per synthesised paper candle (its high and low)

PAPER_MARKET = re.compile(r"[A-Z0-9]{1,16}/[A-Z0-9]{1,16}")


class PriceFeed:
    def __init__(self, *, seed: int, start_price: float, volatility: float, csv_path: Path | None = None):
        self.random = random.Random(seed)
        self.price = start_price
        self.volatility = volatility
        self.replay: list[float] | None = None
        self.index = 0
        if csv_path is not None:
            self.replay = read_prices(csv_path)
            self.price = self.replay[0]

    def next(self) -> float:
        if self.replay is not None:
            price = self.replay[self.index % len(self.replay)]
            self.index += 1
            self.price = price
            return price
        self.price *= math.exp(self.random.gauss(0.0, self.volatility))
        return self.price


class PriceFileError(ValueError):
    """The replay file cannot be used; the message names the file, the line and the problem."""


def read_prices(path: Path) -> list[float]:
    """Prices from a CSV file: one row per tick, the price in the last column, an optional header."""
    prices = []
    try:
        with open(path, newline="") as handle:
            for line, row in enumerate(csv.reader(handle), start=1):
                if not row:
                    continue
                cell = row[-1].strip()
                try:
                    price = float(cell)
                except ValueError:
                    if prices or line > 1:  # only the first line may be a header
                        raise PriceFileError(f"{path.name}, line {line}: {cell[:40]!r} is not a price") from None
                    continue
                if not math.isfinite(price) or price <= 0:
                    raise PriceFileError(f"{path.name}, line {line}: a price must be a positive number, got {cell!r}")
                prices.append(price)
    except UnicodeDecodeError:
        raise PriceFileError(f"{path.name}: not a text (CSV) file") from None
    except csv.Error as error:
        raise PriceFileError(f"{path.name}: not a valid CSV file ({error})") from None
    if not prices:
        raise PriceFileError(f"{path.name}: no prices")
    return prices


class PaperExchange(Exchange):
    name = "paper"
    in_process = True

    def __init__(
        self,
        *,
        seed: int,
        start_price: float,
        volatility: float,
        tick_seconds: float,
        fee_rate: float,
        initial_quote: float,
        initial_base: float,
        csv_path: Path | None = None,
        start_time: float = 0.0,
    ):
        self.seed, self.start_price, self.volatility, self.csv_path = seed, start_price, volatility, csv_path
        self.tick_seconds = tick_seconds
        self.fee = fee_rate
        self.initial = (initial_quote, initial_base)
        self.clock = start_time
        self.feeds: dict[str, PriceFeed] = {}
        self.markets: dict[str, Market] = {}
        self.funds: dict[str, float] = {}
        # Resting orders per symbol: buys as a max-heap on price, sells as a min-heap.
        self.buys: dict[str, list] = {}
        self.sells: dict[str, list] = {}
        self.orders: dict[str, Order] = {}  # open, by client id
        self.closed: OrderedDict[str, tuple[Order, list[Fill]]] = OrderedDict()
        self.pending_fills: dict[str, list[Fill]] = {}
        self.sequence = count(1)
        self.run = uuid.uuid4().hex[:8]  # trade ids stay unique across restarts

    @classmethod
    def from_config(cls, paper: PaperConfig, *, start_time: float = 0.0, csv_path: Path | None = None):
        return cls(
            seed=paper.seed,
            start_price=paper.start_price,
            volatility=paper.volatility,
            tick_seconds=paper.tick_seconds,
            fee_rate=paper.fee_rate,
            initial_quote=paper.initial_quote,
            initial_base=paper.initial_base,
            start_time=start_time,
            csv_path=csv_path,
        )

    async def connect(self, symbols: list[str]) -> None:
        # The paper exchange lists every well-formed BASE/QUOTE pair as a market, and nothing else
        # (a live exchange checks its own market list): no symbol with quotes or newlines trades.
        missing = [s for s in symbols if not PAPER_MARKET.fullmatch(s)]
        if missing:
            raise OrderRejected(f"paper has no market {', '.join(map(repr, missing))}")
        for index, symbol in enumerate(symbols):
            base, quote = symbol.split("/")
            start = self.start_price if index == 0 else self.start_price / (10**index)
            self.feeds[symbol] = PriceFeed(
                seed=self.seed + index,
                start_price=start,
                volatility=self.volatility,
                csv_path=self.csv_path if index == 0 else None,
            )
            step = 10 ** math.floor(math.log10(start) - 4)
            self.markets[symbol] = Market(
                symbol, base, quote, price_step=step, amount_step=1e-6, min_amount=1e-5, min_cost=PAPER_MIN_COST
            )
            self.funds.setdefault(quote, self.initial[0])
            self.funds.setdefault(base, self.initial[1])
            self.buys[symbol], self.sells[symbol], self.pending_fills[symbol] = [], [], []

    def market(self, symbol: str) -> Market:
        return self.markets[symbol]

    def fee_rate(self, symbol: str, *, maker: bool) -> float:
        return self.fee

    def restore(self, *, prices: dict[str, float], replay: dict[str, int], clock: float, changes: dict[str, float]):
        """Continue a simulation after a restart: the last price (or the replay's position) and clock,
        and the initial balances changed by every paper fill booked so far."""
        for symbol, feed in self.feeds.items():
            if feed.replay is not None:
                feed.index = replay.get(symbol, 0)
            elif symbol in prices:
                feed.price = prices[symbol]
        self.clock = max(self.clock, clock)
        for coin, change in changes.items():
            self.funds[coin] = self.funds.get(coin, 0.0) + change

    def state(self) -> dict:
        """What `restore` needs besides the fills (saved by the engine every tick)."""
        return {
            "clock": self.clock,
            "prices": {symbol: feed.price for symbol, feed in self.feeds.items()},
            "replay": {symbol: feed.index for symbol, feed in self.feeds.items() if feed.replay is not None},
        }

    async def fetch_price(self, symbol: str) -> tuple[float, float]:
        self.clock += self.tick_seconds
        price = self.feeds[symbol].next()
        self._match(symbol, price)
        return price, self.clock

    def trade_at(self, symbol: str, price: float, clock: float) -> list[Fill]:
        """Move the market to `price` at `clock` (the backtester's ticks, instead of the feed's):
        resting orders fill exactly as in fetch_price; returns their fills (taken, like fetch_fills)."""
        self.clock = clock
        self.feeds[symbol].price = price
        self._match(symbol, price)
        fills = self.pending_fills[symbol]
        if fills:
            self.pending_fills[symbol] = []
        return fills

    def _match(self, symbol: str, price: float) -> None:
        buys, sells = self.buys[symbol], self.sells[symbol]
        while buys and -buys[0][0] >= price:
            self._fill(heapq.heappop(buys)[2])
        while sells and sells[0][0] <= price:
            self._fill(heapq.heappop(sells)[2])

    def _trade_id(self) -> str:
        return f"{TRADE_PREFIX}{self.run}-{next(self.sequence)}"

    def _close(self, order: Order, status: str, fills: list[Fill]) -> None:
        order.status = status
        self.orders.pop(order.client_id, None)
        self.closed[order.client_id] = (order, fills)
        if len(self.closed) > CLOSED_ORDERS_KEPT:
            self.closed.popitem(last=False)

    def _fill(self, order: Order) -> None:
        if order.status != "open":
            return  # canceled after it was queued
        market = self.markets[order.symbol]
        cost = order.price * order.amount
        fee = cost * self.fee
        if order.side == "buy":
            self.funds[market.base] += order.amount
            self.funds[market.quote] -= fee  # the cost was reserved when the order was placed
        else:
            self.funds[market.quote] += cost - fee
        order.filled = order.amount
        fill = Fill(
            order.client_id,
            order.symbol,
            order.side,
            order.price,
            order.amount,
            fee,
            market.quote,
            self.clock,
            self._trade_id(),
        )
        self._close(order, "filled", [fill])
        self.pending_fills[order.symbol].append(fill)

    async def place_limit(self, order: Order, *, post_only: bool) -> Order:
        return self.place_limit_now(order, post_only=post_only)

    # The *_now methods are the calls themselves, synchronous (nothing here waits): the backtester
    # uses them directly, so its orders meet exactly the checks and fills of the live paper engine.
    def place_limit_now(self, order: Order, *, post_only: bool) -> Order:
        market = self.markets[order.symbol]
        price = self.feeds[order.symbol].price
        if post_only and (
            (order.side == "buy" and order.price >= price) or (order.side == "sell" and order.price <= price)
        ):
            raise OrderRejected(f"post-only {order.side} at {order.price} would cross the price {price}")
        live = copy.copy(order)  # the exchange's own record (dataclasses.replace is slow in backtests)
        live.status, live.created_at, live.filled = "open", self.clock, 0.0
        if order.side == "buy":
            cost = order.price * order.amount
            if self.funds[market.quote] < cost * (1 + self.fee):
                raise OrderRejected(f"insufficient {market.quote} for a buy of {cost:.2f}")
            self.funds[market.quote] -= cost
            heapq.heappush(self.buys[order.symbol], (-order.price, next(self.sequence), live))
        else:
            if self.funds[market.base] + 1e-12 < order.amount:
                raise OrderRejected(f"insufficient {market.base} for a sell of {order.amount}")
            self.funds[market.base] -= order.amount
            heapq.heappush(self.sells[order.symbol], (order.price, next(self.sequence), live))
        live.exchange_id = order.exchange_id = f"paper-{next(self.sequence)}"
        order.created_at = self.clock
        self.orders[order.client_id] = live
        return order

    async def place_market(self, order: Order) -> list[Fill]:
        return self.place_market_now(order)

    def place_market_now(self, order: Order) -> list[Fill]:
        market = self.markets[order.symbol]
        price, amount = self.feeds[order.symbol].price, order.amount
        fee = price * amount * self.fee
        if order.side == "sell":
            if self.funds[market.base] + 1e-12 < amount:
                raise OrderRejected(f"insufficient {market.base} for a market sell of {amount}")
            self.funds[market.base] -= amount
            self.funds[market.quote] += price * amount - fee
        else:
            self.funds[market.quote] -= price * amount + fee
            self.funds[market.base] += amount
        order.exchange_id = f"paper-{next(self.sequence)}"
        fill = Fill(
            order.client_id, order.symbol, order.side, price, amount, fee, market.quote, self.clock, self._trade_id()
        )
        self._close(dataclasses.replace(order, filled=amount), "filled", [fill])
        return [fill]

    async def cancel(self, order: Order) -> None:
        self.cancel_now(order)

    def cancel_now(self, order: Order) -> None:
        live = self.orders.get(order.client_id)
        if live is None or live.status != "open":
            return
        self._close(live, "canceled", [])
        market = self.markets[live.symbol]
        # The heap entry stays and is skipped when reached; the reservation comes back now.
        if live.side == "buy":
            self.funds[market.quote] += live.price * live.amount
        else:
            self.funds[market.base] += live.amount

    async def fetch_order(self, order: Order) -> OrderReport:
        live = self.orders.get(order.client_id)
        if live is not None:
            return OrderReport("open", 0.0, [], live.exchange_id)
        if order.client_id not in self.closed:
            return OrderReport("missing", 0.0, [])
        closed, fills = self.closed[order.client_id]
        status = "closed" if closed.status == "filled" else "canceled"
        return OrderReport(status, closed.filled, list(fills), closed.exchange_id)

    async def fetch_open_orders(self, symbol: str) -> list[Order]:
        return [dataclasses.replace(o) for o in self.orders.values() if o.symbol == symbol]

    async def fetch_fills(self, symbol: str, known: dict[str, Order], cursor: int | None) -> FillBatch:
        fills = self.pending_fills[symbol]
        if fills:
            self.pending_fills[symbol] = []
        return FillBatch(fills, None)

    async def fetch_candles(self, symbol: str, timeframe_seconds: int, limit: int) -> list[list[float]]:
        """The paper market's own path as candles: a replayed file's prices (one per tick), else the
        seeded random walk at the feed's volatility, run up to the current price and clock (the
        history a market with these settings would have had: deterministic for the seed)."""
        feed = self.feeds[symbol]
        per_candle = max(1, round(timeframe_seconds / self.tick_seconds)) if self.tick_seconds > 0 else 1
        if feed.replay is not None:
            path = feed.replay[-limit * per_candle :]
        else:
            steps = min(per_candle, CANDLE_SUBSTEPS)
            sigma = feed.volatility * math.sqrt(per_candle / steps)
            rng = random.Random(f"{self.seed}:{symbol}:candles")
            path = [1.0]
            for _ in range(limit * steps):
                path.append(path[-1] * math.exp(rng.gauss(0.0, sigma)))
            scale = feed.price / path[-1]
            path = [price * scale for price in path]
            per_candle = steps
        end = int(self.clock // timeframe_seconds) * timeframe_seconds
        number = max(1, (len(path) - 1) // per_candle)
        candles = []
        for index in range(number):
            chunk = path[index * per_candle : (index + 1) * per_candle + 1]
            ts = (end - (number - index) * timeframe_seconds) * 1000
            candles.append([ts, chunk[0], max(chunk), min(chunk), chunk[-1], 0.0])
        return candles[-limit:]

    async def balances(self) -> dict[str, float]:
        return dict(self.funds)

    def total_funds(self) -> dict[str, float]:
        """Balances with every open order's reservation added back (what the fills say one owns)."""
        totals = dict(self.funds)
        for order in self.orders.values():
            market = self.markets[order.symbol]
            if order.side == "buy":
                totals[market.quote] += order.price * order.amount
            else:
                totals[market.base] += order.amount
        return totals
