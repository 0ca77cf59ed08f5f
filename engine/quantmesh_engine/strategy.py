"""The grid strategy: which orders should rest on the book, given the price and the held layers.

Levels sit every `price_interval` from an anchor (the first price seen). Buys rest on the
`buy_window` levels below the price; a filled buy at level L becomes a held layer and gets a
sell one interval above (level L+1); the sell's fill frees the level again. At most
`max_layers` layers (held or being bought) exist at once, and only the `sell_window` sells
nearest the price rest on the book (the others wait, so far-away sells don't tie up order slots).
This module only decides; it never talks to an exchange.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import GridConfig


@dataclass(frozen=True)
class Quote:
    side: str
    level: int
    price: float
    amount: float | None  # buys: None, sized from order_quote_size by the trader; sells: the layer's amount


class GridStrategy:
    def __init__(self, config: GridConfig, anchor: float, held: dict[int, float] | None = None):
        self.config = config
        self.anchor = anchor
        self.held: dict[int, float] = dict(held or {})

    def level_price(self, level: int) -> float:
        return self.anchor + level * self.config.price_interval

    def level_of(self, price: float) -> int:
        """The highest level strictly below `price` (a buy there cannot cross)."""
        level = math.floor((price - self.anchor) / self.config.price_interval)
        if self.level_price(level) >= price:
            level -= 1
        return level

    def desired(self, price: float, *, buys_allowed: bool) -> dict[tuple[str, int], Quote]:
        """The quotes that should rest now, keyed by (side, level)."""
        wanted: dict[tuple[str, int], Quote] = {}
        top = self.level_of(price)
        sells = sorted(self.held)[: self.config.sell_window]  # the sells nearest the price
        for level in sells:
            sell_price = self.level_price(level + 1)
            if sell_price > price:  # below or at the price it would cross: it fills on the next tick anyway
                wanted[("sell", level + 1)] = Quote("sell", level + 1, sell_price, self.held[level])
        if buys_allowed:
            room = self.config.max_layers - len(self.held)
            for level in range(top, top - self.config.buy_window, -1):
                if room <= 0:
                    break
                if level in self.held:
                    continue
                if self.level_price(level) <= 0:
                    break
                wanted[("buy", level)] = Quote("buy", level, self.level_price(level), None)
                room -= 1
        return wanted

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
