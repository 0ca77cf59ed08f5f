"""The interface the trader uses: identical for the paper exchange and live (ccxt) exchanges."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass


class ExchangeError(Exception):
    """Temporary trouble (network, rate limit, exchange down): retried with back-off."""


class AuthError(ExchangeError):
    """The exchange rejected the API key or secret: nothing works until the customer fixes them."""


class OrderRejected(ExchangeError):
    """This order was refused (post-only would cross, insufficient balance...); others may go on."""


class OrderNotFound(OrderRejected):
    """The exchange has no such order (never placed, or gone from its history)."""


@dataclass(frozen=True)
class Market:
    symbol: str
    base: str
    quote: str
    price_step: float
    amount_step: float
    min_amount: float = 0.0
    min_cost: float = 0.0


@dataclass
class Order:
    client_id: str
    symbol: str
    side: str  # "buy" | "sell"
    price: float
    amount: float
    level: int
    exchange_id: str | None = None
    status: str = "open"  # pending (saved, being sent) | open | settling | filled | canceled | failed
    created_at: float = 0.0
    filled: float = 0.0
    kind: str = "limit"  # limit | market


@dataclass
class OrderReport:
    """What the exchange says became of one of our orders: the authority before we forget it."""

    status: str  # open | closed | canceled | missing (the exchange has no such order)
    filled: float  # base amount filled so far, by the exchange's count
    fills: list[Fill]  # the trades it has shown for the order so far (may lag `filled`)
    exchange_id: str | None = None


@dataclass
class FillBatch:
    """Fills for our orders, and where the next look should start (the trade cursor, kept on disk)."""

    fills: list[Fill]
    cursor: int | None


@dataclass(frozen=True)
class Fill:
    client_id: str
    symbol: str
    side: str
    price: float
    amount: float
    fee: float
    fee_currency: str
    timestamp: float
    trade_id: str = ""


def ceil_to_step(value: float, step: float) -> float:
    if step <= 0:
        return value
    return round(math.ceil(value / step - 1e-9) * step, 12)


def floor_to_step(value: float, step: float) -> float:
    if step <= 0:
        return value
    # A little slack so that 0.3 / 0.1 does not floor to 2.
    return round(math.floor(value / step + 1e-9) * step, 12)


class Exchange(ABC):
    name: str
    # True for an exchange inside this process (paper): a call cannot half-succeed, so the trader
    # may write a whole quote's records in one transaction instead of one before each request.
    in_process = False

    @abstractmethod
    async def connect(self, symbols: list[str]) -> None:
        """Load markets and check the credentials (AuthError when they are refused)."""

    @abstractmethod
    def market(self, symbol: str) -> Market: ...

    def round_order(self, symbol: str, side: str, price: float, amount: float) -> tuple[float, float] | None:
        """Price rounded to the tick away from the market (buys down, sells up, so a post-only order
        never crosses by rounding) and amount truncated to the lot step; None when the order would
        be below the market's minimum amount or cost, or round to zero: such an order is never sent."""
        market = self.market(symbol)
        price = floor_to_step(price, market.price_step) if side == "buy" else ceil_to_step(price, market.price_step)
        amount = floor_to_step(amount, market.amount_step)
        if price <= 0 or amount <= 0 or amount < market.min_amount or price * amount < market.min_cost:
            return None
        return price, amount

    @abstractmethod
    async def fetch_price(self, symbol: str) -> tuple[float, float]:
        """(last price, timestamp in seconds)."""

    @abstractmethod
    async def place_limit(self, order: Order, *, post_only: bool) -> Order: ...

    @abstractmethod
    async def place_market(self, order: Order) -> list[Fill]:
        """Send a market order; returns the fills its reply shows with their real prices (maybe none
        yet: the trader then asks `fetch_order` until the exchange tells)."""

    @abstractmethod
    async def cancel(self, order: Order) -> None:
        """Cancel; an order the exchange no longer has open is not an error (fetch_order says why)."""

    @abstractmethod
    async def fetch_order(self, order: Order) -> OrderReport:
        """The order's status and its trades, found by exchange id or else by our client id."""

    @abstractmethod
    async def fetch_open_orders(self, symbol: str) -> list[Order]:
        """Open orders of `symbol` that carry our client ids (the customer's own orders are not ours)."""

    @abstractmethod
    async def fetch_fills(self, symbol: str, known: dict[str, Order], cursor: int | None) -> FillBatch:
        """Trades of our orders of `symbol` from `cursor` on (repeats allowed: the store books each
        trade id once). `known` maps exchange order ids to our orders; trades of other orders are
        looked up and kept only when their client id is ours."""

    def client_id(self, *, side: str, level: int, sequence: int) -> str:
        """Our client order id, valid on this exchange: side, grid level and a sequence number."""
        return f"qm-{side[0]}{level}-{sequence}"

    def fee_rate(self, symbol: str, *, maker: bool) -> float:
        """The trading fee per side as a fraction (0.001 = 0.1 %)."""
        return 0.0

    @abstractmethod
    async def balances(self) -> dict[str, float]: ...

    async def fetch_candles(self, symbol: str, timeframe_seconds: int, limit: int) -> list[list[float]]:
        """The last `limit` OHLCV candles of `timeframe_seconds`, oldest first, as
        [ts ms, open, high, low, close, volume] (ccxt's shape): the strategy advisor's prices."""
        raise NotImplementedError(f"{self.name} gives no candles")

    async def close(self) -> None:
        return None
