"""A fake exchange on loopback that unmodified ccxt trades against: Binance spot and OKX v5 REST,
signed requests, a ledger with a matching engine on a scripted price path, and scripted faults."""

from .ledger import FakeOrder, FakeTrade, Ledger, Rejected, Scenarios, UnknownOrder
from .server import FakeExchangeServer

__all__ = ["FakeExchangeServer", "FakeOrder", "FakeTrade", "Ledger", "Rejected", "Scenarios", "UnknownOrder"]
