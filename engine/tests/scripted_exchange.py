"""A scripted in-memory exchange behind the engine's own `Exchange` interface, with the habits of
real ones the trader must survive: trades reported late, market-order replies without fills,
fees in the coin bought, orders filled just before a cancel, a request that fails after the
exchange acted on it. It keeps its own balances, so tests compare the engine's books with it."""

from __future__ import annotations

from dataclasses import dataclass, field

from quantmesh_engine.exchanges.base import (
    Exchange,
    ExchangeError,
    Fill,
    FillBatch,
    Market,
    Order,
    OrderNotFound,
    OrderReport,
)


@dataclass
class RemoteOrder:
    exchange_id: str
    client_id: str
    symbol: str
    side: str
    kind: str
    price: float
    amount: float
    filled: float = 0.0
    status: str = "open"  # open | closed | canceled
    trades: list[dict] = field(default_factory=list)


class ScriptedExchange(Exchange):
    name = "scripted"

    def __init__(
        self,
        prices: list[float],
        *,
        fee_rate: float = 0.001,
        fee_in_base: bool = False,
        market_reply_has_fills: bool = True,
        trade_delay: int = 0,
        market_trade_delay: int = 0,
        min_cost: float = 5.0,
        quote: float = 100_000.0,
    ):
        self.prices = list(prices)
        self.tick = 0
        self.price = prices[0]
        self.fee = fee_rate
        self.fee_in_base = fee_in_base
        self.market_reply_has_fills = market_reply_has_fills
        self.trade_delay = trade_delay  # ticks before a trade shows in the trade feed and order queries
        self.market_trade_delay = market_trade_delay  # the same, for market orders
        self.market_ = Market("BTC/USDT", "BTC", "USDT", 0.01, 1e-6, min_amount=1e-5, min_cost=min_cost)
        self.orders: dict[str, RemoteOrder] = {}
        self.trades: list[dict] = []
        self.balances_ = {"USDT": quote, "BTC": 0.0}
        self.auto_match = True
        self.fail_after_place = False  # the next place_limit is accepted, then the reply is lost
        self.calls: list[str] = []
        self._ids = 0

    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids}"

    # --- scripting -------------------------------------------------------------------------

    def fill(self, client_id: str, amount: float | None = None, price: float | None = None) -> None:
        """Fill (part of) a resting order now, as the market would."""
        order = next(o for o in self.orders.values() if o.client_id == client_id)
        amount = order.amount - order.filled if amount is None else amount
        self._trade(order, amount, order.price if price is None else price)

    def _trade(self, order: RemoteOrder, amount: float, price: float) -> None:
        value = amount * price
        fee_coin = "BTC" if self.fee_in_base and order.side == "buy" else "USDT"
        fee = amount * self.fee if fee_coin == "BTC" else value * self.fee
        sign = 1 if order.side == "buy" else -1
        self.balances_["BTC"] += sign * amount
        self.balances_["USDT"] -= sign * value
        self.balances_[fee_coin] -= fee
        trade = {
            "id": self._next_id("t"),
            "order": order.exchange_id,
            "price": price,
            "amount": amount,
            "fee": fee,
            "fee_currency": fee_coin,
            "side": order.side,
            "timestamp": self.tick * 1000,
            "visible_at": self.tick + (self.market_trade_delay if order.kind == "market" else self.trade_delay),
        }
        self.trades.append(trade)
        order.trades.append(trade)
        order.filled += amount
        if order.filled >= order.amount - 1e-12:
            order.status = "closed"

    def _visible(self, trades: list[dict]) -> list[dict]:
        return [t for t in trades if t["visible_at"] <= self.tick]

    def _fills(self, client_id: str, trades: list[dict]) -> list[Fill]:
        return [
            Fill(
                client_id,
                "BTC/USDT",
                t["side"],
                t["price"],
                t["amount"],
                t["fee"],
                t["fee_currency"],
                t["timestamp"] / 1000,
                t["id"],
            )
            for t in trades
        ]

    # --- the Exchange interface ---------------------------------------------------------------

    async def connect(self, symbols: list[str]) -> None:
        return None

    def market(self, symbol: str) -> Market:
        return self.market_

    def fee_rate(self, symbol: str, *, maker: bool) -> float:
        return self.fee

    async def fetch_price(self, symbol: str) -> tuple[float, float]:
        self.tick += 1
        self.price = self.prices[min(self.tick - 1, len(self.prices) - 1)]
        if self.auto_match:
            for order in list(self.orders.values()):
                if order.status == "open" and order.kind == "limit":
                    crossed = self.price <= order.price if order.side == "buy" else self.price >= order.price
                    if crossed:
                        self._trade(order, order.amount - order.filled, order.price)
        return self.price, float(self.tick)

    async def place_limit(self, order: Order, *, post_only: bool) -> Order:
        self.calls.append(f"place {order.client_id}")
        remote = RemoteOrder(
            self._next_id("x"), order.client_id, order.symbol, order.side, "limit", order.price, order.amount
        )
        self.orders[remote.exchange_id] = remote
        if self.fail_after_place:
            self.fail_after_place = False
            raise ExchangeError("RequestTimeout: the reply was lost")
        order.exchange_id = remote.exchange_id
        return order

    async def place_market(self, order: Order) -> list[Fill]:
        self.calls.append(f"market {order.client_id}")
        remote = RemoteOrder(self._next_id("x"), order.client_id, order.symbol, order.side, "market", 0.0, order.amount)
        self.orders[remote.exchange_id] = remote
        order.exchange_id = remote.exchange_id
        self._trade(remote, order.amount, self.price)
        return self._fills(order.client_id, remote.trades) if self.market_reply_has_fills else []

    def _find(self, order: Order) -> RemoteOrder:
        if order.exchange_id in self.orders:
            return self.orders[order.exchange_id]
        for remote in self.orders.values():
            if remote.client_id == order.client_id:
                return remote
        raise OrderNotFound(f"no order {order.client_id}")

    async def cancel(self, order: Order) -> None:
        self.calls.append(f"cancel {order.client_id}")
        try:
            remote = self._find(order)
        except OrderNotFound:
            return
        if remote.status == "open":
            remote.status = "canceled"

    async def fetch_order(self, order: Order) -> OrderReport:
        try:
            remote = self._find(order)
        except OrderNotFound:
            return OrderReport("missing", 0.0, [])
        return OrderReport(
            remote.status,
            remote.filled,
            self._fills(remote.client_id, self._visible(remote.trades)),
            remote.exchange_id,
        )

    async def fetch_open_orders(self, symbol: str) -> list[Order]:
        return [
            Order(o.client_id, symbol, o.side, o.price, o.amount, 0, exchange_id=o.exchange_id, filled=o.filled)
            for o in self.orders.values()
            if o.status == "open" and o.kind == "limit"
        ]

    async def fetch_fills(self, symbol: str, known: dict[str, Order], cursor: int | None) -> FillBatch:
        since = cursor or 0
        trades = [t for t in self._visible(self.trades) if t["timestamp"] >= since]
        fills = []
        for trade in trades:
            fills += self._fills(self.orders[trade["order"]].client_id, [trade])
        newest = max([since, *(t["timestamp"] for t in trades)])
        return FillBatch(fills, newest)

    async def balances(self) -> dict[str, float]:
        return dict(self.balances_)
