"""The paper exchange: a deterministic simulated market with a matching engine.

Prices follow a seeded random walk (or replay a CSV of prices); resting limit orders fill at
their limit price when the price reaches them, fees are charged in the quote currency and
balances are tracked. The simulated clock advances one tick per price fetch, so the same seed
always gives the same prices, fills and PnL.
"""

from __future__ import annotations

import csv
import heapq
import math
import random
import re
from itertools import count
from pathlib import Path

from .base import Exchange, Fill, Market, Order, OrderRejected

PAPER_MARKET = re.compile(r"[A-Z0-9]{1,16}/[A-Z0-9]{1,16}")


class PriceFeed:
    def __init__(self, *, seed: int, start_price: float, volatility: float, csv_path: Path | None = None):
        self.random = random.Random(seed)
        self.price = start_price
        self.volatility = volatility
        self.replay: list[float] | None = None
        if csv_path is not None:
            self.replay = _read_prices(csv_path)
            self.index = 0

    def next(self) -> float:
        if self.replay is not None:
            price = self.replay[self.index % len(self.replay)]
            self.index += 1
            self.price = price
            return price
        self.price *= math.exp(self.random.gauss(0.0, self.volatility))
        return self.price


def _read_prices(path: Path) -> list[float]:
    prices = []
    with open(path, newline="") as handle:
        for row in csv.reader(handle):
            if not row:
                continue
            cell = row[-1].strip()
            try:
                prices.append(float(cell))
            except ValueError:
                if prices:  # only a header line may be non-numeric
                    raise ValueError(f"{path.name}: {cell!r} is not a price") from None
    if not prices:
        raise ValueError(f"{path.name}: no prices")
    return prices


class PaperExchange(Exchange):
    name = "paper"

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
        self.fee_rate = fee_rate
        self.initial = (initial_quote, initial_base)
        self.clock = start_time
        self.feeds: dict[str, PriceFeed] = {}
        self.markets: dict[str, Market] = {}
        self.funds: dict[str, float] = {}
        # Resting orders per symbol: buys as a max-heap on price, sells as a min-heap.
        self.buys: dict[str, list] = {}
        self.sells: dict[str, list] = {}
        self.orders: dict[str, Order] = {}
        self.pending_fills: dict[str, list[Fill]] = {}
        self.sequence = count(1)

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
                symbol, base, quote, price_step=step, amount_step=1e-6, min_amount=1e-5, min_cost=5.0
            )
            self.funds.setdefault(quote, self.initial[0])
            self.funds.setdefault(base, self.initial[1])
            self.buys[symbol], self.sells[symbol], self.pending_fills[symbol] = [], [], []

    def market(self, symbol: str) -> Market:
        return self.markets[symbol]

    def restore(self, price_by_symbol: dict[str, float], clock: float, funds: dict[str, float]) -> None:
        """Continue a simulation after a restart from its last price, clock and balances."""
        for symbol, price in price_by_symbol.items():
            if symbol in self.feeds and self.feeds[symbol].replay is None:
                self.feeds[symbol].price = price
        self.clock = max(self.clock, clock)
        self.funds.update(funds)

    async def fetch_price(self, symbol: str) -> tuple[float, float]:
        self.clock += self.tick_seconds
        price = self.feeds[symbol].next()
        self._match(symbol, price)
        return price, self.clock

    def _match(self, symbol: str, price: float) -> None:
        buys, sells = self.buys[symbol], self.sells[symbol]
        while buys and -buys[0][0] >= price:
            self._fill(heapq.heappop(buys)[2])
        while sells and sells[0][0] <= price:
            self._fill(heapq.heappop(sells)[2])

    def _fill(self, order: Order) -> None:
        if order.status != "open":
            return  # canceled after it was queued
        market = self.markets[order.symbol]
        cost = order.price * order.amount
        fee = cost * self.fee_rate
        if order.side == "buy":
            self.funds[market.base] += order.amount
            self.funds[market.quote] -= fee  # the cost was reserved when the order was placed
        else:
            self.funds[market.quote] += cost - fee
        order.status = "filled"
        self.pending_fills[order.symbol].append(
            Fill(
                order.client_id,
                order.symbol,
                order.side,
                order.price,
                order.amount,
                fee,
                market.quote,
                self.clock,
                f"p{next(self.sequence)}",
            )
        )

    async def place_limit(self, order: Order, *, post_only: bool) -> Order:
        market = self.markets[order.symbol]
        price = self.feeds[order.symbol].price
        if post_only and (
            (order.side == "buy" and order.price >= price) or (order.side == "sell" and order.price <= price)
        ):
            raise OrderRejected(f"post-only {order.side} at {order.price} would cross the price {price}")
        if order.side == "buy":
            cost = order.price * order.amount
            if self.funds[market.quote] < cost * (1 + self.fee_rate):
                raise OrderRejected(f"insufficient {market.quote} for a buy of {cost:.2f}")
            self.funds[market.quote] -= cost
            heapq.heappush(self.buys[order.symbol], (-order.price, next(self.sequence), order))
        else:
            if self.funds[market.base] + 1e-12 < order.amount:
                raise OrderRejected(f"insufficient {market.base} for a sell of {order.amount}")
            self.funds[market.base] -= order.amount
            heapq.heappush(self.sells[order.symbol], (order.price, next(self.sequence), order))
        order.exchange_id = f"paper-{next(self.sequence)}"
        order.status = "open"
        order.created_at = self.clock
        self.orders[order.client_id] = order
        return order

    async def place_market(self, symbol: str, side: str, amount: float, client_id: str) -> list[Fill]:
        market = self.markets[symbol]
        price = self.feeds[symbol].price
        fee = price * amount * self.fee_rate
        if side == "sell":
            if self.funds[market.base] + 1e-12 < amount:
                raise OrderRejected(f"insufficient {market.base} for a market sell of {amount}")
            self.funds[market.base] -= amount
            self.funds[market.quote] += price * amount - fee
        else:
            self.funds[market.quote] -= price * amount + fee
            self.funds[market.base] += amount
        return [Fill(client_id, symbol, side, price, amount, fee, market.quote, self.clock, f"p{next(self.sequence)}")]

    async def cancel(self, order: Order) -> None:
        live = self.orders.pop(order.client_id, None)
        if live is None or live.status != "open":
            return
        live.status = "canceled"
        market = self.markets[live.symbol]
        # The heap entry stays and is skipped when reached; the reservation comes back now.
        if live.side == "buy":
            self.funds[market.quote] += live.price * live.amount
        else:
            self.funds[market.base] += live.amount

    async def fetch_open_orders(self, symbol: str) -> list[Order]:
        return [o for o in self.orders.values() if o.symbol == symbol and o.status == "open"]

    async def fetch_fills(self, symbol: str, open_orders: dict[str, Order]) -> list[Fill]:
        fills = self.pending_fills[symbol]
        if not fills:
            return fills
        self.pending_fills[symbol] = []
        for fill in fills:
            self.orders.pop(fill.client_id, None)
        return fills

    async def balances(self) -> dict[str, float]:
        return dict(self.funds)

    def total_funds(self) -> dict[str, float]:
        """Balances with every open order's reservation added back: what survives a restart
        (orders do not; reconciliation re-places them)."""
        totals = dict(self.funds)
        for order in self.orders.values():
            if order.status != "open":
                continue
            market = self.markets[order.symbol]
            if order.side == "buy":
                totals[market.quote] += order.price * order.amount
            else:
                totals[market.base] += order.amount
        return totals
