"""The fake exchange's books: balances, orders, trades and a matching engine on one scripted price.

Both REST dialects (binance.py, okx.py) are views of this one ledger. Resting limit orders fill at
their own price (maker) when the price reaches them; market orders and crossing limit orders fill
at the current price (taker). Scenarios are switches the tests flip (see `Scenarios`). All methods
take the lock: the HTTP server runs in its own thread while the test reads and scripts from another.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass, field


class Rejected(Exception):
    """An order the exchange refuses; `reason` is one of insufficient_funds | would_take | bad_order."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class UnknownOrder(Exception):
    """Cancel or query of an order that is not open (filled, canceled) or does not exist."""


@dataclass
class Scenarios:
    fill_before_cancel: bool = False  # a cancel arrives just after the order filled: "unknown order"
    partial_fill_fraction: float | None = None  # each price step fills at most this share of an order
    trade_delay_requests: int = 0  # a trade shows in my-trades only after this many my-trades requests
    market_reply_without_fills: bool = False  # market order replies carry no price, no fills (Bybit, KuCoin)
    buy_fee_currency: str = "quote"  # "base": a buy's fee is taken from the coin bought
    client_id_echo_prefix: str = ""  # "t-": ids are stored and echoed rewritten (Gate.io)
    drop_replies: int = 0  # the next N order placements succeed but their connection is dropped


@dataclass
class FakeOrder:
    id: str
    client_id: str
    side: str
    type: str  # limit | market
    price: float
    amount: float
    post_only: bool
    created_ms: int
    filled: float = 0.0
    cost: float = 0.0
    status: str = "open"  # open | filled | canceled | rejected
    updated_ms: int = 0

    @property
    def remaining(self) -> float:
        return round(self.amount - self.filled, 10)

    @property
    def average(self) -> float:
        return self.cost / self.filled if self.filled else 0.0


@dataclass
class FakeTrade:
    id: str
    order_id: str
    client_id: str
    side: str
    price: float
    amount: float
    fee: float
    fee_currency: str
    maker: bool
    timestamp_ms: int
    hidden_for: int = 0  # my-trades requests left before it is listed


@dataclass
class Ledger:
    base: str = "BTC"
    quote: str = "USDT"
    price: float = 30000.0
    fee_rate: float = 0.001
    amount_step: float = 0.00001
    price_step: float = 0.01
    min_notional: float = 5.0
    balances: dict[str, float] = field(default_factory=lambda: {"USDT": 10000.0, "BTC": 0.0})
    scenarios: Scenarios = field(default_factory=Scenarios)

    def __post_init__(self):
        self.lock = threading.RLock()
        self.initial_balances = dict(self.balances)
        self.orders: dict[str, FakeOrder] = {}
        self.trades: list[FakeTrade] = []
        self._order_ids = itertools.count(1001)
        self._trade_ids = itertools.count(500001)
        self.prices: list[tuple[int, float]] = [(self._now_ms(), self.price)]  # (ms, price): the klines

    # --- what the tests read ------------------------------------------------------------------

    @property
    def symbol(self) -> str:
        return f"{self.base}/{self.quote}"

    def balance_change(self, currency: str) -> float:
        with self.lock:
            return self.balances.get(currency, 0.0) - self.initial_balances.get(currency, 0.0)

    def open_orders(self) -> list[FakeOrder]:
        with self.lock:
            return [o for o in self.orders.values() if o.status == "open"]

    def locked(self, currency: str) -> float:
        with self.lock:
            if currency == self.quote:
                return sum(o.remaining * o.price for o in self.open_orders() if o.side == "buy")
            return sum(o.remaining for o in self.open_orders() if o.side == "sell")

    def candles(self, period_ms: int, since: int | None, limit: int) -> list[list[float]]:
        """OHLCV of the prices the market has had, by `period_ms` (what an exchange's klines give)."""
        with self.lock:
            buckets: dict[int, list[float]] = {}
            for ms, price in self.prices:
                buckets.setdefault(ms - ms % period_ms, []).append(price)
        rows = [
            [ts, p[0], max(p), min(p), p[-1], 0.0] for ts, p in sorted(buckets.items()) if since is None or ts >= since
        ]
        return rows[:limit]

    # --- matching -----------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    def set_price(self, price: float) -> None:
        """Move the market: resting orders the price reaches fill (partly, under partial fills)."""
        with self.lock:
            self.price = price
            self.prices.append((self._now_ms(), price))
            for order in sorted(self.open_orders(), key=lambda o: o.created_ms):
                crossed = price <= order.price if order.side == "buy" else price >= order.price
                if crossed:
                    share = self.scenarios.partial_fill_fraction
                    amount = order.remaining if share is None else min(order.remaining, self._lot(order.amount * share))
                    self._fill(order, order.price, amount or order.remaining, maker=True)

    def fill_resting(self, order_id: str) -> None:
        """Fill what is left of one resting order at its price (a trade only this order's price met)."""
        with self.lock:
            order = self.orders[order_id]
            if order.status == "open":
                self._fill(order, order.price, order.remaining, maker=True)

    def _lot(self, amount: float) -> float:
        return round(math.floor(amount / self.amount_step + 1e-9) * self.amount_step, 10)

    def _fill(self, order: FakeOrder, price: float, amount: float, *, maker: bool) -> FakeTrade:
        value = price * amount
        if order.side == "buy":
            fee_in_base = self.scenarios.buy_fee_currency == "base"
            fee = round(amount * self.fee_rate, 10) if fee_in_base else round(value * self.fee_rate, 10)
            fee_currency = self.base if fee_in_base else self.quote
            self.balances[self.quote] -= value
            self.balances[self.base] += amount
        else:
            fee, fee_currency = round(value * self.fee_rate, 10), self.quote
            self.balances[self.base] -= amount
            self.balances[self.quote] += value
        self.balances[fee_currency] -= fee
        order.filled = round(order.filled + amount, 10)
        order.cost += value
        order.updated_ms = self._now_ms()
        if order.remaining <= 1e-12:
            order.status = "filled"
        trade = FakeTrade(
            str(next(self._trade_ids)),
            order.id,
            order.client_id,
            order.side,
            price,
            amount,
            fee,
            fee_currency,
            maker,
            order.updated_ms,
            hidden_for=self.scenarios.trade_delay_requests,
        )
        self.trades.append(trade)
        return trade

    # --- what the REST dialects call -------------------------------------------------------------

    def place(
        self,
        *,
        side: str,
        type: str,
        amount: float,
        price: float | None,
        client_id: str,
        post_only: bool,
        cancel_if_would_take: bool = False,
    ) -> FakeOrder:
        """A new order, filled at once where it crosses. A post-only order that would take is refused,
        or (`cancel_if_would_take`, as OKX does) accepted and canceled at once."""
        with self.lock:
            amount = self._lot(amount)
            if amount <= 0:
                raise Rejected("bad_order", "amount below the lot size")
            reference = price if type == "limit" else self.price
            if reference * amount < self.min_notional:
                raise Rejected("bad_order", f"order value below the minimum notional {self.min_notional}")
            if type == "limit" and abs(round(price / self.price_step) * self.price_step - price) > 1e-9:
                raise Rejected("bad_order", "price is not a multiple of the tick size")
            crosses = type == "market" or (price >= self.price if side == "buy" else price <= self.price)
            if post_only and crosses and not cancel_if_would_take:
                raise Rejected("would_take", "post-only order would immediately match and take")
            needed = amount * reference * (1 + self.fee_rate) if side == "buy" else amount
            currency = self.quote if side == "buy" else self.base
            if self.balances.get(currency, 0.0) - self.locked(currency) < needed - 1e-9:
                raise Rejected("insufficient_funds", "insufficient balance for the requested action")
            now = self._now_ms()
            order = FakeOrder(
                str(next(self._order_ids)),
                self.scenarios.client_id_echo_prefix + client_id,
                side,
                type,
                price if type == "limit" else 0.0,
                amount,
                post_only,
                now,
                updated_ms=now,
            )
            self.orders[order.id] = order
            if post_only and crosses:
                order.status = "canceled"
            elif crosses:  # a taker: fills at once at the market's price
                self._fill(order, self.price, amount, maker=False)
            return order

    def find(self, *, order_id: str | None = None, client_id: str | None = None) -> FakeOrder:
        with self.lock:
            if order_id is not None and order_id in self.orders:
                return self.orders[order_id]
            for order in self.orders.values():
                if client_id is not None and order.client_id == client_id:
                    return order
            raise UnknownOrder(order_id or client_id)

    def cancel(self, *, order_id: str | None = None, client_id: str | None = None) -> FakeOrder:
        with self.lock:
            order = self.find(order_id=order_id, client_id=client_id)
            if order.status == "open" and self.scenarios.fill_before_cancel:
                self._fill(order, order.price, order.remaining, maker=True)
            if order.status != "open":
                raise UnknownOrder(order.id)
            order.status = "canceled"
            order.updated_ms = self._now_ms()
            return order

    def visible_trades(self, *, since_ms: int | None = None, order_id: str | None = None) -> list[FakeTrade]:
        """My-trades as the exchange lists them; each request counts down late trades."""
        with self.lock:
            listed = []
            for trade in self.trades:
                if trade.hidden_for > 0:
                    trade.hidden_for -= 1
                    continue
                if since_ms is not None and trade.timestamp_ms < since_ms:
                    continue
                if order_id is not None and trade.order_id != order_id:
                    continue
                listed.append(trade)
            return listed

    def order_trades(self, order: FakeOrder) -> list[FakeTrade]:
        with self.lock:
            return [t for t in self.trades if t.order_id == order.id]

    def take_drop(self) -> bool:
        """True when this placement's reply is to be lost (the order stays placed)."""
        with self.lock:
            if self.scenarios.drop_replies > 0:
                self.scenarios.drop_replies -= 1
                return True
            return False
