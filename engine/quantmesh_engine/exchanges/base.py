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
    status: str = "open"  # open | filled | canceled | rejected
    created_at: float = 0.0
    filled: float = 0.0


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
    supports_post_only = True

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
    async def place_market(self, symbol: str, side: str, amount: float, client_id: str) -> list[Fill]: ...

    @abstractmethod
    async def cancel(self, order: Order) -> None: ...

    @abstractmethod
    async def fetch_open_orders(self, symbol: str) -> list[Order]: ...

    @abstractmethod
    async def fetch_fills(self, symbol: str, open_orders: dict[str, Order]) -> list[Fill]:
        """Fills since the last call, for our orders of `symbol`."""

    @abstractmethod
    async def balances(self) -> dict[str, float]: ...

    async def close(self) -> None:
        return None
