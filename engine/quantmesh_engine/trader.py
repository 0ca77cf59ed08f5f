"""One symbol's trading loop step: price → fills → accounting → risk → orders.

The same code runs against the paper exchange and live exchanges. Orders carry client ids
(side, grid level, sequence; in each exchange's dialect) and are saved before they are sent, so
every fill maps back to its grid level, also after a crash. The exchange is the authority for
fills: an order we stop wanting is "settling" until the exchange has said what became of it
(status and trades), and only then is it forgotten; every trade is booked once, by trade id,
whichever way it is reported (trade feed, order query, market order reply).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter

from .adaptive import AdaptiveController, fee_floor
from .config import ConfigError, EngineConfig, money_problems
from .exchanges.base import Exchange, ExchangeError, Fill, Order, OrderRejected, OrderReport
from .logs import event
from .risk import DailyLoss, RiskControl, RiskView
from .store import Store
from .strategy import GridStrategy

logger = logging.getLogger("quantmesh.trader")
EPSILON = 1e-9


class Trader:
    def __init__(
        self,
        *,
        symbol: str,
        config: EngineConfig,
        exchange: Exchange,
        store: Store,
        counters: Counter,
        daily: DailyLoss | None = None,
    ):
        self.symbol = symbol
        self.config = config
        self.exchange = exchange
        self.store = store
        self.counters = counters
        self.risk = RiskControl(config.risk, symbol, counters, store, daily)
        self.strategy: GridStrategy | None = None
        self.adaptive: AdaptiveController | None = None  # strategy.kind adaptive: moves the grid
        self.open: dict[str, Order] = {}  # resting and wanted, by client id
        self.by_key: dict[tuple[str, int], str] = {}
        self.settling: dict[str, Order] = {}  # not wanted (or market): waiting for the exchange's word
        self.price: float | None = None
        self.last_time = 0.0
        self.view = RiskView(True, False, "ok")
        self.skipped = 0  # orders not sent because they were below the exchange's minimum
        self.last_skip: str | None = None
        self._skip_logged: set[tuple[str, int]] = set()
        self._top_level: int | None = None
        self._checked = False
        self._sellable: dict[tuple[int, float], bool] = {}  # (level, amount) -> can be sold (cache)
        self._sequence = store.get_state(f"sequence:{symbol}", 0)
        self._cursor: int | None = store.get_state(f"cursor:{symbol}")

    @property
    def position(self):
        return self.store.position(self.symbol)

    # --- start-up and reconciliation --------------------------------------------------------

    async def start(self) -> None:
        """Load our orders and reconcile them with the exchange (after a restart or a crash):
        fills missed while down are booked (and become layers), orders gone are settled."""
        for order in self.store.open_orders(self.symbol):
            if order.status == "open":
                self._track(order)
            else:
                self.settling[order.client_id] = order
        anchor = self.store.get_state(f"anchor:{self.symbol}")
        if anchor is not None:
            interval = self.store.get_state(f"interval:{self.symbol}", self.config.grid.price_interval)
            grid = dataclasses.replace(self.config.grid, price_interval=interval)
            self.strategy = GridStrategy(grid, anchor, self._stored_layers())
        if self._cursor is None:
            # Not the customer's trades from before us: from our oldest order on (an older engine
            # kept no cursor), or from now.
            times = [o.created_at for o in [*self.open.values(), *self.settling.values()] if o.created_at]
            self._cursor = int(min(times) * 1000) if times else None
        await self.reconcile()

    def _stored_layers(self) -> dict[int, float]:
        return {int(k): v for k, v in self.store.get_state(f"layers:{self.symbol}", {}).items()}

    async def reconcile(self) -> None:
        """Repair drift: book fills we missed, settle orders the exchange no longer has open (asking
        it whether they filled), cancel orders of ours the exchange has but we do not want."""
        await self._fetch_fills()
        on_exchange = {o.client_id: o for o in await self.exchange.fetch_open_orders(self.symbol)}
        for client_id, order in list(self.open.items()):
            if client_id not in on_exchange:
                self._untrack(order)
                self.counters["reconcile_repairs"] += 1
                event(logger, logging.INFO, "order gone from the exchange", symbol=self.symbol, client_id=client_id)
                await self._settle(order)
        known = set(self.open) | set(self.settling)
        for order in list(self.settling.values()):
            await self._settle(order)
        for client_id, remote in on_exchange.items():
            if client_id in known:
                continue
            stored = self.store.order(client_id)
            order = stored or dataclasses.replace(remote, level=None)
            order.exchange_id = remote.exchange_id
            self.settling[client_id] = order
            self.counters["reconcile_repairs"] += 1
            event(logger, logging.INFO, "unknown order of ours canceled", symbol=self.symbol, client_id=client_id)
            await self.exchange.cancel(order)
            await self._settle(order)
        self._top_level = None  # re-quote on the next step

    # --- fills ---------------------------------------------------------------------------------

    async def _fetch_fills(self) -> int:
        orders = () if self.exchange.in_process else (*self.open.values(), *self.settling.values())
        known = {o.exchange_id: o for o in orders if o.exchange_id}
        batch = await self.exchange.fetch_fills(self.symbol, known, self._cursor)
        return await self._book(batch.fills, cursor=batch.cursor)

    async def _book(self, fills: list[Fill], *, cursor: int | None = None) -> int:
        """Book new fills (a trade id already booked is skipped); returns how many were new."""
        booked = 0
        if fills:
            base = self.symbol.split("/")[0]
            with self.store.transaction():
                for fill in fills:
                    booked += self._book_one(fill, base)
                if booked and self.strategy is not None:
                    self.store.set_state(f"layers:{self.symbol}", self.strategy.held)
                if cursor is not None and cursor != self._cursor:
                    self.store.set_state(f"cursor:{self.symbol}", cursor)
        elif cursor is not None and cursor != self._cursor:
            self.store.set_state(f"cursor:{self.symbol}", cursor)
        if cursor is not None:
            self._cursor = cursor
        return booked

    def _book_one(self, fill: Fill, base: str) -> int:
        order = self.open.get(fill.client_id) or self.settling.get(fill.client_id) or self.store.order(fill.client_id)
        level = order.level if order is not None and order.kind == "limit" else None
        if level is None and order is not None and order.kind == "limit" and self.strategy is not None:
            level = self.strategy.nearest_level(fill.price)  # an order of ours we had no record of
        realized = self.store.fill_recorded(fill, level, order_done=False)
        if realized is None:
            return 0  # booked already
        if order is not None:
            order.filled += fill.amount
            if fill.client_id in self.open and order.filled >= order.amount * (1 - EPSILON):
                self._untrack(order)  # a partly filled order keeps resting for the rest
                self.store.order_status(fill.client_id, "filled")
        self.counters[f"fills_{fill.side}"] += 1
        if self.strategy is not None and level is not None:
            if fill.side == "buy":
                # A fee taken in the coin bought leaves less to sell: the layer holds what arrived.
                self.strategy.bought(level, fill.amount - (fill.fee if fill.fee_currency == base else 0.0))
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
            trade_id=fill.trade_id,
        )
        return 1

    async def _settle(self, order: Order) -> bool:
        """Ask the exchange what became of an order we no longer want, book its trades, and forget
        it only when every filled amount is booked. True when settled."""
        order.status = "settling"
        self.settling[order.client_id] = order
        report = await self.exchange.fetch_order(order)
        if report.exchange_id and not order.exchange_id:
            order.exchange_id = report.exchange_id
        if report.status == "open":
            await self.exchange.cancel(order)
            report = await self.exchange.fetch_order(order)
        await self._book(report.fills)
        booked = order.filled  # kept by _book (and read from the store for orders loaded at start)
        if not self._settled(report, booked):
            if order.level is not None:  # (an order of ours we hold no record of stays in memory only)
                self.store.order_saved(order)  # keeps its exchange id for the next look
            return False
        if booked >= order.amount * (1 - EPSILON):
            status = "filled"
        elif report.status == "missing" and booked == 0 and not order.exchange_id:
            status = "failed"  # never reached the exchange
        else:
            status = "canceled"
        self.store.order_status(order.client_id, status)
        self.settling.pop(order.client_id, None)
        return True

    @staticmethod
    def _settled(report: OrderReport, booked: float) -> bool:
        if report.status == "open":
            return False  # the cancel has not taken effect yet
        if report.status == "missing":
            return True  # nothing more will be known than the trades already booked
        return booked >= report.filled * (1 - EPSILON) - 1e-12  # else its trades are not all visible yet

    # --- the loop step ---------------------------------------------------------------------------

    async def step(self) -> None:
        price, now = await self.exchange.fetch_price(self.symbol)
        self.price, self.last_time = price, now
        if not self._checked:
            self._check_money(price)
        booked = await self._fetch_fills() if self.open or self.settling else 0
        for order in list(self.settling.values()):
            await self._settle(order)
        adaptive = self.config.strategy.kind == "adaptive"
        if self.strategy is None:
            self._new_grid(price)
        elif not adaptive and self.strategy.config.price_interval != self.config.grid.price_interval:
            await self._regrid(price, self.config.grid.price_interval, reason="config changed")
        if adaptive:
            await self._adapt(price, now)
        position = self.position
        view = self.risk.evaluate(
            now=now,
            price=price,
            position_amount=position.amount,
            position_cost=position.cost,
            realized_pnl=position.realized_pnl,
            buy_size=self.config.grid.order_quote_size,
        )
        if view.stop_loss and not any(o.kind == "market" for o in self.settling.values()):
            await self._close_position(price)
        top = self.strategy.level_of(price)
        if booked or top != self._top_level or view.state != self.view.state:
            self._top_level = top
            self.view = view
            await self._quote(price)

    def _check_money(self, price: float) -> None:
        """Refuse a grid that loses money after fees, or whose orders the exchange would refuse.
        (An adaptive grid's interval starts at the fee floor at least: only its orders are checked.)"""
        market = self.exchange.market(self.symbol)
        fee = self.exchange.fee_rate(self.symbol, maker=self.config.grid.post_only)
        grid = self.config.grid
        if self.config.strategy.kind == "adaptive":
            floor = fee_floor(price, fee)
            grid = dataclasses.replace(grid, price_interval=max(grid.price_interval, floor))
        problems = money_problems(
            grid,
            symbol=self.symbol,
            price=price,
            fee_rate=fee,
            min_cost=market.min_cost,
            min_amount=market.min_amount,
        )
        if problems:
            raise ConfigError(problems)
        self._checked = True

    def _new_grid(self, price: float) -> None:
        self.strategy = GridStrategy(self.config.grid, price, self._stored_layers())
        self.store.set_state(f"anchor:{self.symbol}", price)
        self.store.set_state(f"interval:{self.symbol}", self.config.grid.price_interval)

    async def _adapt(self, price: float, now: float) -> None:
        """The adaptive strategy: re-centre on the interval it wants, skew the buys by inventory."""
        if self.adaptive is None:
            fee = self.exchange.fee_rate(self.symbol, maker=self.config.grid.post_only)
            self.adaptive = AdaptiveController(
                self.config.strategy, fee_rate=fee, interval=self.strategy.config.price_interval
            )
        decision = self.adaptive.observe(price, now, len(self.strategy.held))
        if decision is not None:
            await self._regrid(price, decision.interval, reason=decision.reason)
        if self.adaptive.skew != self.strategy.skew:
            self.strategy.skew = self.adaptive.skew
            self._top_level = None  # re-quote: the buys move

    async def _regrid(self, price: float, interval: float, *, reason: str) -> None:
        """The interval changed: orders on the old levels go, the grid re-anchors at the price."""
        for order in list(self.open.values()):
            await self._cancel(order)
        old = self.strategy.config.price_interval
        self.strategy.regrid(price, dataclasses.replace(self.config.grid, price_interval=interval))
        self._sellable.clear()
        self._top_level = None  # every order went: quote the new levels now
        with self.store.transaction():
            self.store.set_state(f"anchor:{self.symbol}", price)
            self.store.set_state(f"interval:{self.symbol}", interval)
            self.store.set_state(f"layers:{self.symbol}", self.strategy.held)
        event(
            logger,
            logging.INFO,
            "grid re-anchored",
            symbol=self.symbol,
            price=f"{price:.8g}",
            old_interval=f"{old:g}",
            interval=f"{interval:g}",
            reason=reason,
        )

    def strategy_status(self) -> dict:
        """What the strategy is doing and why (for /api/status and the engine page)."""
        if self.adaptive is not None:
            return self.adaptive.status()
        interval = self.strategy.config.price_interval if self.strategy else self.config.grid.price_interval
        return {
            "kind": "grid",
            "volatility": None,
            "interval": interval,
            "skew": 0,
            "last_change": None,
            "reason": "fixed interval (grid.price_interval)",
        }

    def _dust(self) -> frozenset[int]:
        """Held levels whose layer is too small to sell (a partial fill under the minimum)."""
        strategy, sellable = self.strategy, self._sellable
        dust = []
        for level, amount in strategy.held.items():
            key = (level, amount)
            if key not in sellable:
                price = strategy.level_price(level + 1)
                sellable[key] = self.exchange.round_order(self.symbol, "sell", price, amount) is not None
            if not sellable[key]:
                dust.append(level)
        if len(sellable) > 4 * len(strategy.held) + 64:  # keep the cache about the layers held now
            self._sellable = {k: v for k, v in sellable.items() if strategy.held.get(k[0]) == k[1]}
        return frozenset(dust)

    async def _quote(self, price: float) -> None:
        if not self.exchange.in_process:
            await self._requote(price)
            return
        with self.store.transaction():
            await self._requote(price)

    async def _requote(self, price: float) -> None:
        wanted = self.strategy.desired(
            price, buys_allowed=self.view.buys_allowed, buy_budget=self.view.buy_budget, dust=self._dust()
        )
        for key, client_id in list(self.by_key.items()):
            if key not in wanted:
                await self._cancel(self.open[client_id])
        for key, quote in wanted.items():
            if key in self.by_key:
                continue
            amount = quote.amount if quote.amount is not None else self.config.grid.order_quote_size / quote.price
            rounded = self.exchange.round_order(self.symbol, quote.side, quote.price, amount)
            if rounded is None:
                self._skipped(quote.side, quote.level, quote.price, amount)
                continue
            self._skip_logged.discard(key)
            order = Order(
                self._client_id(quote.side, quote.level), self.symbol, quote.side, rounded[0], rounded[1], quote.level
            )
            await self._place(order, post_only=self.config.grid.post_only)

    def _skipped(self, side: str, level: int, price: float, amount: float) -> None:
        market = self.exchange.market(self.symbol)
        self.skipped += 1
        self.counters["orders_below_minimum"] += 1
        self.last_skip = (
            f"{side} of {amount:.8g} at {price:.8g} ({price * amount:.6g} {market.quote}) is below the exchange's "
            f"minimum ({market.min_amount:g} {market.base}, {market.min_cost:g} {market.quote}): not sent"
        )
        if (side, level) not in self._skip_logged:  # once per level until it is sent, not every tick
            self._skip_logged.add((side, level))
            event(logger, logging.WARNING, "order skipped", symbol=self.symbol, level=level, reason=self.last_skip)

    def _client_id(self, side: str, level: int) -> str:
        self._sequence += 1
        return self.exchange.client_id(side=side, level=level, sequence=self._sequence)

    async def _place(self, order: Order, *, post_only: bool) -> None:
        self._save_pending(order)
        try:
            await self.exchange.place_limit(order, post_only=post_only)
        except OrderRejected as error:
            self.store.order_status(order.client_id, "failed")
            self.counters["orders_rejected"] += 1
            event(
                logger,
                logging.WARNING,
                "order rejected",
                symbol=self.symbol,
                side=order.side,
                price=f"{order.price:.8g}",
                reason=str(error),
            )
            return
        except ExchangeError:
            self.settling[order.client_id] = order  # placed or not: the exchange will tell
            raise
        order.status = "open"
        with self.store.transaction():
            self.store.order_saved(order)
            self.store.set_state(f"sequence:{self.symbol}", self._sequence)
        self._track(order)
        self.counters["orders_placed"] += 1

    def _save_pending(self, order: Order) -> None:
        """Save an order before it is sent: a crash or a network error mid-request leaves a record by
        which the order and its fills are found again. (Not needed in-process: nothing half-happens.)"""
        order.status = "pending"
        if self.exchange.in_process:
            return
        with self.store.transaction():
            self.store.order_saved(order)
            self.store.set_state(f"sequence:{self.symbol}", self._sequence)

    def _track(self, order: Order) -> None:
        self.open[order.client_id] = order
        self.by_key[(order.side, order.level)] = order.client_id

    def _untrack(self, order: Order) -> None:
        self.open.pop(order.client_id, None)
        if self.by_key.get((order.side, order.level)) == order.client_id:
            del self.by_key[(order.side, order.level)]

    async def _cancel(self, order: Order) -> None:
        """Cancel, then settle: a fill that came just before the cancel is booked, not lost."""
        self._untrack(order)
        order.status = "settling"
        self.settling[order.client_id] = order
        if not self.exchange.in_process:
            self.store.order_status(order.client_id, "settling")
        await self.exchange.cancel(order)
        await self._settle(order)

    async def _close_position(self, price: float) -> None:
        """Stop-loss: cancel everything and sell the whole position at market, booked at the price
        the exchange reports (pending until it does)."""
        for order in list(self.open.values()):
            await self._cancel(order)
        amount = self.position.amount
        rounded = self.exchange.round_order(self.symbol, "sell", price, amount) if amount > 0 else None
        if rounded is not None:
            order = Order(self._client_id("sell", 0), self.symbol, "sell", 0.0, rounded[1], 0, kind="market")
            self._save_pending(order)
            self.settling[order.client_id] = order
            fills = await self.exchange.place_market(order)
            order.status = "settling"
            self.store.order_saved(order)
            await self._book(fills)
            await self._settle(order)
        self.strategy.held.clear()
        self.store.set_state(f"layers:{self.symbol}", {})

    async def shutdown(self, *, cancel_orders: bool) -> None:
        if cancel_orders:
            for order in list(self.open.values()):
                await self._cancel(order)
        self.store.set_state(f"sequence:{self.symbol}", self._sequence)

    def clear_risk(self) -> list[str]:
        cleared = self.risk.clear()
        self._top_level = None  # re-quote on the next step
        return cleared

    def open_orders(self) -> list[Order]:
        return sorted(self.open.values(), key=lambda o: -o.price)
