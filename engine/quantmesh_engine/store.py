"""The engine's records in SQLite on the data volume: orders, fills, trades, positions, state.

Position and PnL are derived from fills as they are recorded (average-cost accounting, fees
included), so a restart loses nothing: everything is read back from the database. A fill is
stored once per exchange trade id (a unique key), whatever path reports it and however often.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .exchanges.base import Fill, Order
from .logs import event

logger = logging.getLogger("quantmesh.store")

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

# Schema changes of existing engine databases, in order; PRAGMA user_version counts those applied.
MIGRATIONS = (
    # 1: one row per exchange trade. Older engines booked a trade again after a restart or a
    # reconnect and wrote '' for some: such rows keep their money figures but get a unique key.
    """
    UPDATE fills SET trade_id = 'legacy-' || id WHERE trade_id = '';
    UPDATE fills SET trade_id = trade_id || '#dup-' || id WHERE id NOT IN (
        SELECT MIN(id) FROM fills GROUP BY symbol, trade_id
    );
    CREATE UNIQUE INDEX IF NOT EXISTS fills_trade ON fills (symbol, trade_id);
    CREATE INDEX IF NOT EXISTS fills_order ON fills (client_id);
    ALTER TABLE orders ADD COLUMN kind TEXT NOT NULL DEFAULT 'limit';
    """,
)


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
        fee_in_base = fill.fee_currency == self.symbol.split("/")[0]
        fee_quote = fill.fee * fill.price if fee_in_base else fill.fee
        self.fees += fee_quote
        self.volume += value
        self.fills += 1
        if fill.side == "buy":
            if fee_in_base:  # the exchange kept part of the coins bought: we hold less, at the full price
                self.amount += fill.amount - fill.fee
                self.cost += value
            else:
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
        self._migrate()
        self.positions = {row[0]: Position(*row) for row in self.db.execute("SELECT * FROM positions")}

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            shared = self.db.execute(
                "SELECT COUNT(*) FROM fills WHERE id NOT IN (SELECT MIN(id) FROM fills GROUP BY symbol, trade_id)"
            ).fetchone()[0]
            if shared:
                event(logger, logging.WARNING, "fills sharing a trade id kept under a new key", count=shared)
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self.db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

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
            "INSERT INTO orders VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(client_id) DO UPDATE SET "
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
                order.kind,
            ),
        )

    def order_status(self, client_id: str, status: str) -> None:
        self.db.execute("UPDATE orders SET status=?, updated_at=? WHERE client_id=?", (status, time.time(), client_id))

    def open_orders(self, symbol: str) -> list[Order]:
        """Our orders of `symbol` the exchange may still have: resting, being sent or being settled."""
        rows = self.db.execute(
            "SELECT client_id, symbol, side, price, amount, level, exchange_id, status, created_at, 0, kind "
            "FROM orders WHERE symbol=? AND status IN ('open', 'pending', 'settling')",
            (symbol,),
        )
        return [self._order(row) for row in rows.fetchall()]

    def order(self, client_id: str) -> Order | None:
        row = self.db.execute(
            "SELECT client_id, symbol, side, price, amount, level, exchange_id, status, created_at, 0, kind "
            "FROM orders WHERE client_id=?",
            (client_id,),
        ).fetchone()
        return self._order(row) if row else None

    def _order(self, row) -> Order:
        order = Order(*row)
        order.filled = self.booked_amount(order.client_id)
        return order

    def booked_amount(self, client_id: str) -> float:
        row = self.db.execute("SELECT COALESCE(SUM(amount), 0) FROM fills WHERE client_id=?", (client_id,))
        return row.fetchone()[0]

    def order_level(self, client_id: str) -> int | None:
        row = self.db.execute("SELECT level FROM orders WHERE client_id=?", (client_id,)).fetchone()
        return row[0] if row else None

    # --- fills and positions --------------------------------------------------------------------

    def position(self, symbol: str) -> Position:
        if symbol not in self.positions:
            self.positions[symbol] = Position(symbol)
        return self.positions[symbol]

    def has_fill(self, symbol: str, trade_id: str) -> bool:
        row = self.db.execute("SELECT 1 FROM fills WHERE symbol=? AND trade_id=?", (symbol, trade_id))
        return row.fetchone() is not None

    def fill_recorded(self, fill: Fill, level: int | None, *, order_done: bool = True) -> float | None:
        """Record a fill and book it on the position, in one transaction with the order's status;
        None (and nothing changes) when this trade id is already booked."""
        if not fill.trade_id:
            raise ValueError(f"a fill of {fill.client_id} without the exchange's trade id cannot be booked once")
        if self.has_fill(fill.symbol, fill.trade_id):
            return None
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

    def balance_changes(self, trade_id_prefix: str) -> dict[str, float]:
        """What the fills whose trade ids start with `trade_id_prefix` did to each coin's balance."""
        changes: dict[str, float] = {}
        rows = self.db.execute(
            "SELECT symbol, side, fee_currency, SUM(price * amount), SUM(amount), SUM(fee) FROM fills "
            "WHERE substr(trade_id, 1, ?) = ? GROUP BY symbol, side, fee_currency",
            (len(trade_id_prefix), trade_id_prefix),
        )
        for symbol, side, fee_currency, value, amount, fee in rows:
            base, quote = symbol.split("/")
            sign = 1 if side == "buy" else -1
            changes[base] = changes.get(base, 0.0) + sign * amount
            changes[quote] = changes.get(quote, 0.0) - sign * value
            changes[fee_currency] = changes.get(fee_currency, 0.0) - fee
        return changes

    def realized_since(self, since: float) -> float:
        row = self.db.execute("SELECT COALESCE(SUM(realized_pnl), 0) FROM fills WHERE timestamp >= ?", (since,))
        return row.fetchone()[0]

    # --- small state --------------------------------------------------------------------------

    def get_state(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def states_like(self, prefix: str) -> list[tuple[str, object]]:
        rows = self.db.execute("SELECT key, value FROM state WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
        return [(key, json.loads(value)) for key, value in rows]

    def set_state(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, json.dumps(value)))


class _Transaction:
    """BEGIN…COMMIT (ROLLBACK on an exception); inside another transaction it is part of that one."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.outer = False

    def __enter__(self):
        self.outer = not self.db.in_transaction
        if self.outer:
            self.db.execute("BEGIN")

    def __exit__(self, exc_type, *_):
        if self.outer:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
