"""The store: one row per exchange trade (a unique key, also on databases of older engines)."""

from __future__ import annotations

import sqlite3

import pytest
from quantmesh_engine.exchanges.base import Fill
from quantmesh_engine.store import SCHEMA, Store


def fill(trade_id: str, *, symbol: str = "BTC/USDT", side: str = "buy", amount: float = 0.01) -> Fill:
    return Fill("qm-b-1-1", symbol, side, 30000.0, amount, 0.3, "USDT", 1.0, trade_id)


def test_a_trade_is_booked_once_whatever_reports_it(tmp_path):
    store = Store(tmp_path / "engine.db")
    assert store.fill_recorded(fill("8812"), -1) == 0.0
    assert store.fill_recorded(fill("8812"), -1) is None  # reported again: nothing changes
    assert store.position("BTC/USDT").amount == pytest.approx(0.01)
    assert store.fill_recorded(fill("8812", symbol="ETH/USDT"), -1) == 0.0  # ids are per market on Binance
    with pytest.raises(ValueError, match="without the exchange's trade id"):
        store.fill_recorded(fill(""), -1)  # no id: it could not be told from a repeat
    with pytest.raises(sqlite3.IntegrityError):
        store.db.execute(
            "INSERT INTO fills (client_id, symbol, side, price, amount, fee, fee_currency, realized_pnl, timestamp, "
            "trade_id) VALUES ('x', 'BTC/USDT', 'buy', 1, 1, 0, 'USDT', 0, 0, '8812')"
        )


def test_an_older_engine_database_is_migrated(tmp_path):
    path = tmp_path / "engine.db"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)  # the schema older engines made (no kind column, no unique trade id)
    rows = [("7", 0.01), ("7", 0.01), ("", 0.02), ("", 0.03), ("9", 0.04)]  # "7" booked twice after a restart
    for trade_id, amount in rows:
        old.execute(
            "INSERT INTO fills (client_id, symbol, side, level, price, amount, fee, fee_currency, realized_pnl, "
            "timestamp, trade_id) VALUES ('qm-b-1-1', 'BTC/USDT', 'buy', -1, 30000, ?, 0, 'USDT', 0, 0, ?)",
            (amount, trade_id),
        )
    old.execute("INSERT INTO positions VALUES ('BTC/USDT', 0.11, 3300, 0, 0, 3300, 5)")
    old.execute("INSERT INTO orders VALUES ('qm-b-1-1', 'x1', 'BTC/USDT', 'buy', -1, 30000, 0.01, 'open', 0, 0)")
    old.commit()
    old.close()

    store = Store(path)
    ids = [row[0] for row in store.db.execute("SELECT trade_id FROM fills ORDER BY id")]
    assert ids[0] == "7" and ids[4] == "9" and len(set(ids)) == 5
    assert store.position("BTC/USDT").amount == pytest.approx(0.11)  # the books are not rewritten
    assert store.open_orders("BTC/USDT")[0].kind == "limit"
    assert store.fill_recorded(fill("7"), -1) is None
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == 1
    store.close()
    Store(path).close()  # opening again migrates nothing twice
