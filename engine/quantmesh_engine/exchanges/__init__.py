"""Exchanges behind one interface: the paper exchange and every exchange ccxt supports."""
