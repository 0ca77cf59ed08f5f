"""Per-exchange rules the live exchange must follow, for the 13 exchanges the customer manual names.

What ccxt does with our request was checked against the installed ccxt (tests/test_dialects.py
builds the request unmodified ccxt sends for a post-only limit order with our client id, for every
exchange here); the limits are the exchanges' documented ones, tightened where they differ by
product, and kept conservative where the documentation is vague (our ids are at most ~17 characters,
so a tight limit costs nothing):

- binance `newClientOrderId` ^[.A-Z:/a-z0-9_-]{1,36}$; post-only = type LIMIT_MAKER.
- okx `clOrdId` 1-32 case-sensitive letters and digits only; post-only = ordType post_only.
- bybit `orderLinkId` up to 36 letters, digits, `-`, `_`; post-only = timeInForce PostOnly.
- bitget `clientOid` letters, digits and `_`, 1-32 characters; post-only = force post_only.
- gate `text` must start with `t-` (ccxt adds it) and have at most 28 more characters of
  letters, digits, `_`, `-`, `.`; the exchange echoes `t-<our id>`; post-only = time_in_force poc.
- htx `client-order-id` up to 64 characters; post-only = type buy-limit-maker / sell-limit-maker.
- kucoin `clientOid` up to 40 letters, digits, `-`, `_`; post-only = postOnly true.
- kraken `cl_ord_id` a UUID or free text of at most 18 characters; post-only = oflags post.
- bitfinex `cid` is an integer (int45); post-only = flags 4096.
- mexc `newClientOrderId` (32 letters, digits, `-`, `_` kept to); post-only = type LIMIT_MAKER.
- bingx `newClientOrderId` 1-40 characters; post-only = timeInForce PostOnly.
- deribit keeps a client id in `label` (up to 64 characters), which ccxt neither fills from
  `clientOrderId` nor parses back (read it from the order's `info['label']`); post-only = post_only.
- bitmex `clOrdID` up to 36 characters; post-only = execInst ParticipateDoNotInitiate.

ccxt's `has['createPostOnlyOrder']` is unset for htx, kraken, bingx, deribit and bitmex although
their createOrder does send the flag: the table, not `has`, says whether post-only works.

Fee coin of a spot buy: most exchanges take the fee from what is received (the base coin); KuCoin
and Kraken charge the quote by default. Trades carry their real fee currency, which always wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Our ids start with one of these, so the engine can tell its orders from the customer's own.
ID_PREFIX = "qm"
NUMERIC_ID_PREFIX = "31"  # Bitfinex ids are integers below 2**45 (35184372088831): 14 digits from "31"
NUMERIC_ID_DIGITS = 14


@dataclass(frozen=True)
class Dialect:
    exchange_id: str
    client_id_max_length: int  # longest client order id the exchange accepts
    client_id_alphabet: str  # regex character class of allowed characters
    client_id_echo_prefix: str  # prefix the exchange adds when echoing our id ("t-" for gate), "" otherwise
    post_only: bool  # False: the exchange/ccxt cannot place post-only limit orders
    buy_fee_currency: str  # "base" | "quote": the coin a spot buy's fee is usually charged in
    min_notional: float  # fallback minimum order value in quote when the market has none (0 = unknown)
    client_id_param: str = "clientOrderId"  # the createOrder param ccxt sends our id under

    def valid_client_id(self, client_id: str) -> bool:
        pattern = f"[{self.client_id_alphabet}]{{1,{self.client_id_max_length}}}"
        return re.fullmatch(pattern, client_id) is not None


DIALECTS: dict[str, Dialect] = {
    d.exchange_id: d
    for d in (
        Dialect("binance", 36, "A-Za-z0-9_.:/-", "", True, "base", 5.0),
        Dialect("okx", 32, "A-Za-z0-9", "", True, "base", 0.0),
        Dialect("bybit", 36, "A-Za-z0-9_-", "", True, "base", 1.0),
        Dialect("bitget", 32, "A-Za-z0-9_", "", True, "base", 1.0),
        Dialect("gate", 28, "A-Za-z0-9_.-", "t-", True, "base", 3.0),
        Dialect("htx", 64, "A-Za-z0-9_-", "", True, "base", 5.0),
        Dialect("kucoin", 40, "A-Za-z0-9_-", "", True, "quote", 0.1),
        Dialect("kraken", 18, "A-Za-z0-9_-", "", True, "quote", 0.5),
        Dialect("bitfinex", NUMERIC_ID_DIGITS, "0-9", "", True, "base", 0.0),
        Dialect("mexc", 32, "A-Za-z0-9_-", "", True, "base", 1.0),
        Dialect("bingx", 40, "A-Za-z0-9_-", "", True, "base", 0.0),
        Dialect("deribit", 64, "A-Za-z0-9_-", "", True, "base", 0.0, client_id_param="label"),
        Dialect("bitmex", 36, "A-Za-z0-9_-", "", True, "base", 0.0),
    )
}


def dialect_for(exchange_id: str) -> Dialect:
    """The exchange's rules; an exchange we have not checked gets a conservative default: short
    alphanumeric ids and no post-only (the customer is told rather than trusting an unchecked flag)."""
    known = DIALECTS.get(exchange_id)
    if known is not None:
        return known
    return Dialect(exchange_id, 20, "A-Za-z0-9", "", False, "base", 0.0)


def _style(dialect: Dialect) -> str:
    if dialect.valid_client_id("qm-b1-1"):
        return "dashed"
    if dialect.valid_client_id("qmb1x1"):
        return "alphanumeric"
    return "numeric"


def client_id_for(dialect: Dialect, *, side: str, level: int, sequence: int) -> str:
    """Our id for an order: recognisable prefix, side, grid level and a sequence number, in the
    exchange's alphabet. `qm-b-3-17` where dashes are allowed (the engine's historical format),
    `qmbn3x17` where only letters and digits are, `31` + 12 digits where ids are integers."""
    if side not in ("buy", "sell"):
        raise ValueError(f"side must be buy or sell, not {side!r}")
    style = _style(dialect)
    if style == "dashed":
        client_id = f"{ID_PREFIX}-{side[0]}{level}-{sequence}"
    elif style == "alphanumeric":
        sign = "n" if level < 0 else "p"
        client_id = f"{ID_PREFIX}{side[0]}{sign}{abs(level)}x{sequence}"
    else:
        side_digit = "1" if side == "buy" else "2"
        sign_digit = "1" if level < 0 else "0"
        # Level and sequence wrap at 3 and 7 digits: the id only has to be unique among recent orders.
        client_id = f"{NUMERIC_ID_PREFIX}{side_digit}{sign_digit}{abs(level) % 1000:03d}{sequence % 10**7:07d}"
    if not dialect.valid_client_id(client_id):
        raise ValueError(
            f"client id {client_id!r} does not fit {dialect.exchange_id}'s rules "
            f"(at most {dialect.client_id_max_length} of [{dialect.client_id_alphabet}])"
        )
    return client_id


def _our_pattern(dialect: Dialect) -> str:
    style = _style(dialect)
    if style == "numeric":
        return rf"{NUMERIC_ID_PREFIX}\d{{{NUMERIC_ID_DIGITS - len(NUMERIC_ID_PREFIX)}}}"
    if style == "alphanumeric":
        return rf"{ID_PREFIX}[bs][np]\d+x\d+"
    return rf"{ID_PREFIX}-[bs]-?\d+-\d+"


def our_client_id(dialect: Dialect, echoed: str | int | None) -> str | None:
    """The id we sent, from the one the exchange reports, or None when the order is not one of ours
    (placed by hand, or by another program on the same account). The dialect's echo prefix is
    stripped; so is any other tag an exchange puts before our id after a separator (`t-`, `x-`...),
    so that an exchange rewriting ids never makes the engine forget its orders and place them again."""
    if echoed is None:
        return None
    client_id = str(echoed)
    prefix = dialect.client_id_echo_prefix
    if prefix and client_id.startswith(prefix):
        client_id = client_id[len(prefix) :]
    found = re.search(rf"(?:^|[^A-Za-z0-9])({_our_pattern(dialect)})$", client_id)
    return found.group(1) if found else None
