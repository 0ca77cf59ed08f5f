"""Money as Stripe counts it: integer amounts in the currency's minor unit, with the currency.

Most currencies have 2 decimals (4900 USD minor units = 49.00 USD); Stripe's zero-decimal
currencies count whole units (4900 JPY = ¥4,900) and a few count thousandths. Converting to a
decimal amount for display must use the currency's exponent, never a fixed 100.
"""

from __future__ import annotations

from decimal import Decimal

# https://docs.stripe.com/currencies#zero-decimal and #three-decimal
ZERO_DECIMAL = frozenset(
    ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"]
)
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])


def currency_exponent(currency: str) -> int:
    code = (currency or "").lower()
    if code in ZERO_DECIMAL:
        return 0
    return 3 if code in THREE_DECIMAL else 2


def major_units(amount: int, currency: str) -> Decimal:
    """`amount` minor units as a decimal amount of the currency (display only)."""
    return Decimal(int(amount)).scaleb(-currency_exponent(currency))


def money(amount: int, currency: str) -> dict:
    """The API's money shape: the integer amount in minor units and the lowercase ISO currency."""
    return {"amount": int(amount), "currency": (currency or "").lower()}


def money_display(amount: int, currency: str) -> str:
    """For people: "49.00 USD", "4900 JPY"."""
    return f"{major_units(amount, currency)} {(currency or '').upper()}"
