"""TEMPORARY stand-in for the dialect table branch i16x delivers (same interface); deleted before merging."""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "qm"


@dataclass(frozen=True)
class Dialect:
    exchange_id: str
    client_id_max_length: int
    client_id_alphabet: str
    client_id_echo_prefix: str
    post_only: bool
    buy_fee_currency: str
    min_notional: float


_TABLE = {
    "binance": Dialect("binance", 36, "A-Za-z0-9_-", "", True, "quote", 5.0),
    "okx": Dialect("okx", 32, "A-Za-z0-9", "", True, "quote", 0.0),
    "gate": Dialect("gate", 28, "A-Za-z0-9_-", "t-", True, "base", 1.0),
    "bybit": Dialect("bybit", 36, "A-Za-z0-9_-", "", True, "base", 1.0),
    "kucoin": Dialect("kucoin", 40, "A-Za-z0-9_-", "", True, "quote", 0.1),
    "htx": Dialect("htx", 64, "A-Za-z0-9_-", "", False, "base", 5.0),
    "kraken": Dialect("kraken", 18, "0-9", "", False, "quote", 0.0),
    "bingx": Dialect("bingx", 40, "A-Za-z0-9_-", "", False, "quote", 2.0),
    "deribit": Dialect("deribit", 64, "A-Za-z0-9_-", "", False, "quote", 0.0),
    "bitmex": Dialect("bitmex", 36, "A-Za-z0-9_-", "", False, "quote", 0.0),
}


def dialect_for(exchange_id: str) -> Dialect:
    return _TABLE.get(exchange_id, Dialect(exchange_id, 32, "A-Za-z0-9", "", True, "quote", 0.0))


def client_id_for(dialect: Dialect, *, side: str, level: int, sequence: int) -> str:
    sign = "m" if level < 0 else "p"
    if "-" in dialect.client_id_alphabet:
        return f"{PREFIX}-{side[0]}{level}-{sequence}"[: dialect.client_id_max_length]
    return f"{PREFIX}{side[0]}{sign}{abs(level)}x{sequence}"[: dialect.client_id_max_length]


def our_client_id(dialect: Dialect, echoed: str | None) -> str | None:
    if not echoed:
        return None
    if dialect.client_id_echo_prefix and echoed.startswith(dialect.client_id_echo_prefix):
        echoed = echoed[len(dialect.client_id_echo_prefix) :]
    return echoed if re.match(rf"^{PREFIX}", echoed) else None
