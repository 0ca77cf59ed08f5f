"""The engine's records in SQLite on the data volume: orders, fills, trades, positions, state.

Position and PnL are derived from fills as they are recorded (average-cost accounting, fees
included), so a restart loses nothing: everything is read back from the database.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .exchanges.base import Fill, Order

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    client_id TEXT PRIMARY KEY, exchange_id TEXT, symbol TEXT NOT NULL, side TEXT NOT NULL,
    level INTEGER NOT NULL, price REAL NOT NULL, amount REAL NOT NULL, status TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_open ON orders (symbol, status);
CREATE TABLE IF NOT EXISTS fills (
    id INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
    level INTEGER, price REAL NOT NULL, amount REAL NOT NULL, fee REAL NOT NULL, fee_currency TEXT NOT NULL,
    realized_pnl REAL NOT NULL, timestamp REAL NOT NULL, trade_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS fills_time ON fills (timestamp);
CREATE TABLE IF NOT EXISTS positions (
    symbol TEXT PRIMARY KEY, amount REAL NOT NULL, cost REAL NOT NULL, realized_pnl REAL NOT NULL,
    fees REAL NOT NULL, volume REAL NOT NULL, fills INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Position:
    symbol: str
    amount: float = 0.0  # base held
    cost: float = 0.0  # quote paid for what is held, buy fees included
    realized_pnl: float = 0.0  # quote, sell fees included
    fees: float = 0.0
    volume: float = 0.0  # quote traded
    fills: int = 0

    @property
    def average_price(self) -> float:
        return self.cost / self.amount if self.amount > 1e-12 else 0.0

    def unrealized_pnl(self, price: float) -> float:
        return self.amount * price - self.cost

    def apply(self, fill: Fill) -> float:
        """Book a fill; returns the PnL it realised (sells: proceeds - fee - average cost)."""
        value = fill.price * fill.amount
        fee_quote = fill.fee if fill.fee_currency != self.symbol.split("/")[0] else fill.fee * fill.price
        self.fees += fee_quote
        self.volume += value
        self.fills += 1
        if fill.side == "buy":
            self.amount += fill.amount
            self.cost += value + fee_quote
            return 0.0
        sold = min(fill.amount, self.amount)
        basis = self.average_price * sold
        realized = value - fee_quote - basis
        self.amount -= sold
        self.cost -= basis
        if self.amount < 1e-12:
            self.amount, self.cost = 0.0, 0.0
        self.realized_pnl += realized
        return realized


class Store:
    def __init__(self, path: Path):
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.positions = {row[0]: Position(*row) for row in self.db.execute("SELECT * FROM positions")}

    def close(self) -> None:
        self.db.close()

    def snapshot(self) -> bytes:
        """A consistent copy of the whole database, taken while the engine keeps running (SQLite's
        online backup, into memory: the container's /tmp is small)."""
        copy = sqlite3.connect(":memory:")
        try:
            self.db.backup(copy)
            return copy.serialize()
        finally:
            copy.close()

    def transaction(self):
        return _Transaction(self.db)

    # --- orders -------------------------------------------------------------------------------

    def order_saved(self, order: Order) -> None:
        now = time.time()
        self.db.execute(
            "INSERT INTO orders VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(client_id) DO UPDATE SET "
            "exchange_id=excluded.exchange_id, status=excluded.status, updated_at=excluded.updated_at",
            (
                order.client_id,
                order.exchange_id,
                order.symbol,
                order.side,
                order.level,
                order.price,
                order.amount,
                order.status,
                order.created_at or now,
                now,
            ),
        )

    def order_status(self, client_id: str, status: str) -> None:
        self.db.execute("UPDATE orders SET status=?, updated_at=? WHERE client_id=?", (status, time.time(), client_id))

    def open_orders(self, symbol: str) -> list[Order]:
        rows = self.db.execute(
            "SELECT client_id, symbol, side, price, amount, level, exchange_id, status, created_at FROM orders "
            "WHERE symbol=? AND status='open'",
            (symbol,),
        )
        return [Order(*row) for row in rows]

    def order_level(self, client_id: str) -> int | None:
        row = self.db.execute("SELECT level FROM orders WHERE client_id=?", (client_id,)).fetchone()
        return row[0] if row else None

    # --- fills and positions --------------------------------------------------------------------

    def position(self, symbol: str) -> Position:
        if symbol not in self.positions:
            self.positions[symbol] = Position(symbol)
        return self.positions[symbol]

    def fill_recorded(self, fill: Fill, level: int | None, *, order_done: bool = True) -> float:
        """Record a fill and book it on the position, in one transaction with the order's status."""
        position = self.position(fill.symbol)
        realized = position.apply(fill)
        self.db.execute(
            "INSERT INTO fills (client_id, symbol, side, level, price, amount, fee, fee_currency, realized_pnl, "
            "timestamp, trade_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                fill.client_id,
                fill.symbol,
                fill.side,
                level,
                fill.price,
                fill.amount,
                fill.fee,
                fill.fee_currency,
                realized,
                fill.timestamp,
                fill.trade_id,
            ),
        )
        self.db.execute(
            "INSERT OR REPLACE INTO positions VALUES (?,?,?,?,?,?,?)",
            (
                position.symbol,
                position.amount,
                position.cost,
                position.realized_pnl,
                position.fees,
                position.volume,
                position.fills,
            ),
        )
        if order_done:
            self.order_status(fill.client_id, "filled")
        return realized

    def fills(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        symbol: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ):
        query = (
            "SELECT timestamp, symbol, side, price, amount, fee, fee_currency, realized_pnl, client_id, level "
            "FROM fills WHERE 1=1"
        )
        args: list = []
        if since is not None:
            query += " AND timestamp >= ?"
            args.append(since)
        if until is not None:
            query += " AND timestamp < ?"
            args.append(until)
        if symbol is not None:
            query += " AND symbol = ?"
            args.append(symbol)
        query += " ORDER BY id DESC" if newest_first else " ORDER BY id"
        if limit:
            query += f" LIMIT {int(limit)}"
        return self.db.execute(query, args)

    def realized_since(self, since: float) -> float:
        row = self.db.execute("SELECT COALESCE(SUM(realized_pnl), 0) FROM fills WHERE timestamp >= ?", (since,))
        return row.fetchone()[0]

    # --- small state --------------------------------------------------------------------------

    def get_state(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_state(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, json.dumps(value)))


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN")

    def __exit__(self, exc_type, *_):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
