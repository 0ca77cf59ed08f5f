"""One symbol's trading loop step: price → fills → accounting → risk → orders.

The same code runs against the paper exchange and live exchanges. Orders carry client ids
(`qm-b12-345`: side, grid level, sequence) so every fill maps back to its grid level, also
after a restart, when reconciliation compares our records with the exchange's open orders.
"""

from __future__ import annotations

import logging
from collections import Counter

from .config import EngineConfig
from .exchanges.base import Exchange, Fill, Order, OrderRejected
from .logs import event
from .risk import RiskControl, RiskView
from .store import Store
from .strategy import GridStrategy

logger = logging.getLogger("quantmesh.trader")


class Trader:
    def __init__(self, *, symbol: str, config: EngineConfig, exchange: Exchange, store: Store, counters: Counter):
        self.symbol = symbol
        self.config = config
        self.exchange = exchange
        self.store = store
        self.counters = counters
        self.risk = RiskControl(config.risk, symbol, counters)
        self.strategy: GridStrategy | None = None
        self.open: dict[str, Order] = {}
        self.by_key: dict[tuple[str, int], str] = {}
        self.price: float | None = None
        self.last_time = 0.0
        self.view = RiskView(True, False, "ok")
        self._top_level: int | None = None
        self._sequence = store.get_state(f"sequence:{symbol}", 0)

    @property
    def position(self):
        return self.store.position(self.symbol)

    def _client_id(self, side: str, level: int) -> str:
        self._sequence += 1
        return f"qm-{side[0]}{level}-{self._sequence}"

    async def start(self) -> None:
        """Load our open orders and reconcile them with the exchange (after a restart or a crash)."""
        for order in self.store.open_orders(self.symbol):
            self._track(order)
        await self.reconcile()

    async def reconcile(self) -> None:
        """Repair drift: book fills we missed, forget orders the exchange no longer has, cancel
        orders of ours the exchange has but we do not know."""
        await self._book(await self.exchange.fetch_fills(self.symbol, self.open))
        on_exchange = {o.client_id: o for o in await self.exchange.fetch_open_orders(self.symbol)}
        for client_id in [c for c in self.open if c not in on_exchange]:
            order = self.open.pop(client_id)
            self.by_key.pop((order.side, order.level), None)
            self.store.order_status(client_id, "canceled")
            self.counters["reconcile_repairs"] += 1
            event(
                logger, logging.INFO, "order gone from the exchange, forgotten", symbol=self.symbol, client_id=client_id
            )
        for client_id, order in on_exchange.items():
            if client_id not in self.open and client_id.startswith("qm-"):
                await self.exchange.cancel(order)
                self.counters["reconcile_repairs"] += 1
                event(logger, logging.INFO, "unknown order of ours canceled", symbol=self.symbol, client_id=client_id)
        self._top_level = None  # re-quote on the next step

    def _track(self, order: Order) -> None:
        self.open[order.client_id] = order
        self.by_key[(order.side, order.level)] = order.client_id

    async def _book(self, fills: list[Fill]) -> None:
        if not fills:
            return
        with self.store.transaction():
            for fill in fills:
                order = self.open.get(fill.client_id)
                level = order.level if order else self.store.order_level(fill.client_id)
                done = True
                if order:
                    order.filled += fill.amount
                    done = order.filled >= order.amount * (1 - 1e-9)
                    if done:  # a partly filled order keeps resting for the rest
                        self.open.pop(fill.client_id)
                        self.by_key.pop((order.side, order.level), None)
                realized = self.store.fill_recorded(fill, level, order_done=done)
                self.counters[f"fills_{fill.side}"] += 1
                if self.strategy is not None and level is not None:
                    if fill.side == "buy":
                        self.strategy.bought(level, fill.amount)
                    else:
                        self.strategy.sold(level, fill.amount)
                event(
                    logger,
                    logging.INFO,
                    "fill",
                    symbol=self.symbol,
                    side=fill.side,
                    price=f"{fill.price:.8g}",
                    amount=f"{fill.amount:.8g}",
                    fee=f"{fill.fee:.6g}",
                    realized_pnl=f"{realized:.4f}",
                )
            if self.strategy is not None:
                self.store.set_state(f"layers:{self.symbol}", self.strategy.held)

    async def step(self) -> None:
        price, now = await self.exchange.fetch_price(self.symbol)
        self.price, self.last_time = price, now
        fills = await self.exchange.fetch_fills(self.symbol, self.open) if self.open else []
        if self.strategy is None:
            anchor = self.store.get_state(f"anchor:{self.symbol}")
            if anchor is None:
                anchor = price
                self.store.set_state(f"anchor:{self.symbol}", anchor)
            held = {int(k): v for k, v in self.store.get_state(f"layers:{self.symbol}", {}).items()}
            self.strategy = GridStrategy(self.config.grid, anchor, held)
        await self._book(fills)
        position = self.position
        view = self.risk.evaluate(
            now=now,
            price=price,
            position_amount=position.amount,
            position_cost=position.cost,
            realized_pnl=position.realized_pnl,
        )
        if view.stop_loss:
            await self._close_position(price)
        top = self.strategy.level_of(price)
        if fills or top != self._top_level or view.state != self.view.state:
            self._top_level = top
            self.view = view
            await self._quote(price)

    async def _quote(self, price: float) -> None:
        wanted = self.strategy.desired(price, buys_allowed=self.view.buys_allowed)
        for key, client_id in list(self.by_key.items()):
            if key not in wanted:
                await self._cancel(self.open[client_id])
        for key, quote in wanted.items():
            if key in self.by_key:
                continue
            amount = quote.amount if quote.amount is not None else self.config.grid.order_quote_size / quote.price
            rounded = self.exchange.round_order(self.symbol, quote.side, quote.price, amount)
            if rounded is None:
                self.counters["orders_below_minimum"] += 1
                continue
            order = Order(
                self._client_id(quote.side, quote.level), self.symbol, quote.side, rounded[0], rounded[1], quote.level
            )
            try:
                await self.exchange.place_limit(order, post_only=self.config.grid.post_only)
            except OrderRejected as error:
                self.counters["orders_rejected"] += 1
                event(
                    logger,
                    logging.WARNING,
                    "order rejected",
                    symbol=self.symbol,
                    side=quote.side,
                    price=f"{rounded[0]:.8g}",
                    reason=str(error),
                )
                continue
            self._track(order)
            self.store.order_saved(order)
            self.counters["orders_placed"] += 1
        self.store.set_state(f"sequence:{self.symbol}", self._sequence)

    async def _cancel(self, order: Order) -> None:
        await self.exchange.cancel(order)
        self.open.pop(order.client_id, None)
        self.by_key.pop((order.side, order.level), None)
        self.store.order_status(order.client_id, "canceled")

    async def _close_position(self, price: float) -> None:
        """Stop-loss: cancel everything and sell the whole position at market."""
        for order in list(self.open.values()):
            await self._cancel(order)
        amount = self.position.amount
        if amount > 0:
            rounded = self.exchange.round_order(self.symbol, "sell", price, amount)
            if rounded is not None:
                fills = await self.exchange.place_market(self.symbol, "sell", rounded[1], self._client_id("sell", 0))
                await self._book(fills)
        self.strategy.held.clear()
        self.store.set_state(f"layers:{self.symbol}", {})

    async def shutdown(self, *, cancel_orders: bool) -> None:
        if cancel_orders:
            for order in list(self.open.values()):
                await self._cancel(order)
        self.store.set_state(f"sequence:{self.symbol}", self._sequence)

    def open_orders(self) -> list[Order]:
        return sorted(self.open.values(), key=lambda o: -o.price)
