"""The grid strategy: which orders should rest on the book, given the price and the held layers.

Levels sit every `price_interval` from an anchor (the first price seen). Buys rest on the
`buy_window` levels below the price; a filled buy at level L becomes a held layer and gets a
sell one interval above (level L+1); the sell's fill frees the level again. At most
`max_layers` layers (held or being bought) exist at once, and only the `sell_window` sells
nearest the price rest on the book (the others wait, so far-away sells don't tie up order slots).
A layer whose sell level the price has already passed (a jump up) is offered at once: at its own
level when orders may take liquidity, else (post-only) on the first level above the price.
A layer too small to sell (a partial fill below the exchange's minimum) does not block its
level: the level is bought again and the layers merge.
This module only decides; it never talks to an exchange.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .config import GridConfig


class Quote(NamedTuple):  # a tuple: the backtester makes millions of them
    side: str
    level: int
    price: float
    amount: float | None  # buys: None, sized from order_quote_size by the trader; sells: the layer's amount


class GridStrategy:
    def __init__(self, config: GridConfig, anchor: float, held: dict[int, float] | None = None):
        self.config = config
        self.anchor = anchor
        self.held: dict[int, float] = dict(held or {})
        self.skew = 0  # levels the buys sit below the price's level

    def level_price(self, level: int) -> float:
        return self.anchor + level * self.config.price_interval

    def level_of(self, price: float) -> int:
        """The highest level strictly below `price` (a buy there cannot cross)."""
        level = math.floor((price - self.anchor) / self.config.price_interval)
        if self.level_price(level) >= price:
            level -= 1
        return level

    def desired(
        self,
        price: float,
        *,
        buys_allowed: bool,
        buy_budget: float | None = None,
        dust: frozenset[int] = frozenset(),
    ) -> dict[tuple[str, int], Quote]:
        """The quotes that should rest now, keyed by (side, level). `buy_budget` caps what the buys
        may commit in quote (each costs order_quote_size); `dust` are held levels too small to sell."""
        wanted: dict[tuple[str, int], Quote] = {}
        top = self.level_of(price)
        sellable = [level for level in self.held if level not in dust]
        # The sells nearest the price, whichever side of it they are on.
        anchor, step = self.anchor, self.config.price_interval  # level_price, inlined: this runs often
        sellable.sort(key=lambda level: abs(anchor + (level + 1) * step - price))
        above = top + 1  # the first level a post-only sell can rest on
        if self.level_price(above) <= price:
            above += 1
        for level in sellable[: self.config.sell_window]:
            sell_price = self.level_price(level + 1)
            if sell_price <= price and self.config.post_only:
                sell_price = self.level_price(above)  # a maker order, at or above its own level
            wanted[("sell", level + 1)] = Quote("sell", level + 1, sell_price, self.held[level])
        if buys_allowed:
            room = self.config.max_layers - len(self.held) + len(dust)
            budget = buy_budget
            first = top - self.skew
            for level in range(first, first - self.config.buy_window, -1):
                if room <= 0 or (budget is not None and budget < self.config.order_quote_size):
                    break
                if level in self.held and level not in dust:
                    continue
                if self.level_price(level) <= 0:
                    break
                wanted[("buy", level)] = Quote("buy", level, self.level_price(level), None)
                room -= 1
                if budget is not None:
                    budget -= self.config.order_quote_size
        return wanted

    def regrid(self, anchor: float, config: GridConfig) -> None:
        """Move to a new anchor and interval; each held layer moves to the first new level at or
        above its buy price, so its sell stays at least one (new) interval above what it cost."""
        old = {self.level_price(level): amount for level, amount in self.held.items()}
        self.config, self.anchor, self.held = config, anchor, {}
        for bought_at, amount in old.items():
            level = math.ceil((bought_at - anchor) / config.price_interval - 1e-9)
            self.held[level] = self.held.get(level, 0.0) + amount

    def nearest_level(self, price: float) -> int:
        return round((price - self.anchor) / self.config.price_interval)

    def bought(self, level: int, amount: float) -> None:
        self.held[level] = self.held.get(level, 0.0) + amount

    def sold(self, level: int, amount: float) -> None:
        """A sell at `level` closes (part of) the layer one below it."""
        layer = level - 1
        left = self.held.get(layer, 0.0) - amount
        if left <= 1e-12:
            self.held.pop(layer, None)
        else:
            self.held[layer] = left
