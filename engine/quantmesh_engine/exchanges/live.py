"""Live exchanges through ccxt (async): any exchange ccxt supports.

Rounding uses ccxt's own precision rules for the market; minimum amount and cost come from
the market's limits (the dialect's minimum notional where the market has none). Client ids,
post-only and fee coins follow the exchange's dialect (exchanges/dialects.py). ccxt's rate limiter
paces requests; errors are mapped to the engine's kinds (temporary, authentication, rejected
order, order not found) so the trader knows what to do. Fills carry the exchange's trade ids and
prices only: a trade without a price is never booked.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import ccxt
import ccxt.async_support as ccxt_async
from ccxt.base.decimal_to_precision import TRUNCATE, decimal_to_precision

from ..secrets import ExchangeSecrets
from .base import (
    AuthError,
    Exchange,
    ExchangeError,
    Fill,
    FillBatch,
    Market,
    Order,
    OrderNotFound,
    OrderRejected,
    OrderReport,
)
from .dialects import client_id_for, dialect_for, our_client_id

# ccxt's order statuses as the trader reads them.
ORDER_STATUS = {
    "open": "open",
    "closed": "closed",
    "canceled": "canceled",
    "expired": "canceled",
    "rejected": "canceled",
}
TRADE_LOOKBACK_MS = 300_000
TIMEFRAMES_BY_SECONDS = {60: "1m", 300: "5m", 900: "15m", 3600: "1h", 14400: "4h", 86400: "1d"}
DEFAULT_FEE_RATE = 0.001  # when neither the market nor ccxt knows the exchange's fee


def _translate(error: Exception) -> ExchangeError:
    if isinstance(error, ccxt.AuthenticationError | ccxt.PermissionDenied | ccxt.AccountSuspended):
        return AuthError(f"the exchange rejected the API key: {type(error).__name__}")
    if isinstance(error, ccxt.OrderNotFound):
        return OrderNotFound(f"{type(error).__name__}: {error}")
    if isinstance(error, ccxt.InvalidOrder | ccxt.InsufficientFunds):
        return OrderRejected(f"{type(error).__name__}: {error}")
    return ExchangeError(f"{type(error).__name__}: {error}")


def rebased_urls(urls, base: str):
    """ccxt's `urls['api']` (a string or nested dicts of them) with every scheme and host replaced by
    `base`, paths kept: `https://api.binance.com/api/v3` -> `http://127.0.0.1:9000/api/v3`."""
    if isinstance(urls, dict):
        return {key: rebased_urls(value, base) for key, value in urls.items()}
    parts = urlsplit(urls)
    return base.rstrip("/") + urls[len(f"{parts.scheme}://{parts.netloc}") :]


class LiveExchange(Exchange):
    def __init__(self, exchange_id: str, secrets: ExchangeSecrets, *, testnet: bool, client=None, api_url=None):
        self.name = exchange_id
        self.client = client or getattr(ccxt_async, exchange_id)(
            {
                "apiKey": secrets.api_key,
                "secret": secrets.secret,
                "password": secrets.passphrase or None,
                "enableRateLimit": True,
            }
        )
        if testnet:
            try:
                self.client.set_sandbox_mode(True)
            except ccxt.NotSupported:
                raise ExchangeError(
                    f"{exchange_id} has no testnet/sandbox in ccxt; set exchange.testnet: false"
                ) from None
        if api_url:  # operators and tests only (QM_ENGINE_EXCHANGE_API_URL): the exchange at another address
            self.client.urls["api"] = rebased_urls(self.client.urls["api"], api_url)
        self.dialect = dialect_for(exchange_id)
        self.markets: dict[str, Market] = {}
        self._owner: dict[str, str | None] = {}  # exchange order id -> our client id, None: not ours

    async def _call(self, method, *args, **kwargs):
        try:
            return await method(*args, **kwargs)
        except ccxt.BaseError as error:
            raise _translate(error) from None

    async def connect(self, symbols: list[str]) -> None:
        if not self.client.markets:
            await self._call(self.client.load_markets)
        missing = [s for s in symbols if s not in self.client.markets]
        if missing:
            raise OrderRejected(f"{self.name} has no market {', '.join(missing)}")
        for symbol in symbols:
            self.markets[symbol] = self._market(symbol)
        await self._call(self.client.fetch_balance)  # proves the key works before any order

    def _market(self, symbol: str) -> Market:
        raw = self.client.markets[symbol]
        limits = raw.get("limits") or {}
        return Market(
            symbol=symbol,
            base=raw["base"],
            quote=raw["quote"],
            price_step=0.0,
            amount_step=0.0,  # ccxt rounds itself, see round_order
            min_amount=float((limits.get("amount") or {}).get("min") or 0),
            min_cost=float((limits.get("cost") or {}).get("min") or self.dialect.min_notional),
        )

    def market(self, symbol: str) -> Market:
        return self.markets[symbol]

    def client_id(self, *, side: str, level: int, sequence: int) -> str:
        return client_id_for(self.dialect, side=side, level=level, sequence=sequence)

    def fee_rate(self, symbol: str, *, maker: bool) -> float:
        kind = "maker" if maker else "taker"
        rate = self.client.markets[symbol].get(kind)
        if rate is None:
            rate = (self.client.fees.get("trading") or {}).get(kind)
        return float(rate) if rate is not None else DEFAULT_FEE_RATE

    def round_order(self, symbol: str, side: str, price: float, amount: float) -> tuple[float, float] | None:
        """ccxt's precision rules (tick size, significant digits or decimals, per exchange). Buy prices
        are truncated so that rounding never lifts a post-only buy into the market."""
        market = self.markets[symbol]
        try:
            if side == "buy":
                raw = self.client.markets[symbol]["precision"]["price"]
                price = float(decimal_to_precision(price, TRUNCATE, raw, self.client.precisionMode))
            else:
                price = float(self.client.price_to_precision(symbol, price))
            amount = float(self.client.amount_to_precision(symbol, amount))
        except ccxt.InvalidOrder:  # ccxt refuses amounts that round below the precision
            return None
        if price <= 0 or amount <= 0 or amount < market.min_amount or price * amount < market.min_cost:
            return None
        return price, amount

    async def fetch_price(self, symbol: str) -> tuple[float, float]:
        ticker = await self._call(self.client.fetch_ticker, symbol)
        price = ticker.get("last") or ticker.get("close")
        if not price:
            raise ExchangeError(f"{self.name} returned no price for {symbol}")
        return float(price), (ticker.get("timestamp") or self.client.milliseconds()) / 1000

    async def fetch_candles(self, symbol: str, timeframe_seconds: int, limit: int) -> list[list[float]]:
        """ccxt fetch_ohlcv, page after page (exchanges cap one reply, often at 500 or 1000 candles)."""
        timeframe = TIMEFRAMES_BY_SECONDS[timeframe_seconds]
        step = timeframe_seconds * 1000
        since = self.client.milliseconds() - limit * step
        candles: dict[int, list[float]] = {}
        while len(candles) < limit:
            page = await self._call(self.client.fetch_ohlcv, symbol, timeframe, since, limit - len(candles))
            fresh = [row for row in page if row[0] not in candles]
            if not fresh:
                break
            for row in fresh:
                candles[int(row[0])] = [int(row[0]), *map(float, row[1:6])]
            since = int(fresh[-1][0]) + step
        return [candles[ts] for ts in sorted(candles)][-limit:]

    async def place_limit(self, order: Order, *, post_only: bool) -> Order:
        params = {self.dialect.client_id_param: order.client_id}
        if post_only:
            if not self.dialect.post_only:  # config validation refuses this; never downgrade silently
                raise OrderRejected(f"{self.name} cannot place post-only orders")
            params["postOnly"] = True
        placed = await self._call(
            self.client.create_order, order.symbol, "limit", order.side, order.amount, order.price, params
        )
        order.exchange_id = str(placed.get("id"))
        return order

    async def place_market(self, order: Order) -> list[Fill]:
        placed = await self._call(
            self.client.create_order,
            order.symbol,
            "market",
            order.side,
            order.amount,
            None,
            {self.dialect.client_id_param: order.client_id},
        )
        order.exchange_id = str(placed.get("id"))
        # Only trades the reply shows, at their own prices; anything else comes from fetch_order.
        return self._fills(order.client_id, order.symbol, placed.get("trades") or [])

    async def cancel(self, order: Order) -> None:
        try:
            if order.exchange_id is None:
                found = await self._call(
                    self.client.fetch_order, None, order.symbol, {"clientOrderId": order.client_id}
                )
                order.exchange_id = str(found["id"])
            await self._call(self.client.cancel_order, order.exchange_id, order.symbol)
        except OrderRejected:
            pass  # not open any more (filled, canceled, never placed): fetch_order tells which

    async def fetch_order(self, order: Order) -> OrderReport:
        try:
            if order.exchange_id:
                raw = await self._call(self.client.fetch_order, order.exchange_id, order.symbol)
            else:
                raw = await self._call(self.client.fetch_order, None, order.symbol, {"clientOrderId": order.client_id})
        except OrderNotFound:
            return OrderReport("missing", 0.0, [])
        exchange_id = str(raw["id"])
        status = ORDER_STATUS.get(raw.get("status") or "", "open")
        filled = float(raw.get("filled") or 0)
        fills = self._fills(order.client_id, order.symbol, raw.get("trades") or [])
        if filled > sum(f.amount for f in fills) + 1e-12:
            fills = await self._order_trades(order.client_id, order.symbol, exchange_id, raw.get("timestamp"))
        return OrderReport(status, filled, fills, exchange_id)

    async def _order_trades(self, client_id: str, symbol: str, exchange_id: str, since: int | None) -> list[Fill]:
        if self.client.has.get("fetchOrderTrades") is True:
            trades = await self._call(self.client.fetch_order_trades, exchange_id, symbol)
        else:
            trades = await self._call(self.client.fetch_my_trades, symbol, since)
        return self._fills(client_id, symbol, [t for t in trades if str(t.get("order")) == exchange_id])

    async def fetch_open_orders(self, symbol: str) -> list[Order]:
        rows = await self._call(self.client.fetch_open_orders, symbol)
        orders = []
        for row in rows:
            ours = our_client_id(self.dialect, self._echoed_id(row))
            if ours is None:
                continue  # the customer's own order: not ours to touch
            orders.append(
                Order(
                    ours,
                    symbol,
                    row["side"],
                    float(row["price"]),
                    float(row["amount"]),
                    level=0,
                    exchange_id=str(row["id"]),
                    filled=float(row.get("filled") or 0),
                )
            )
        return orders

    async def fetch_fills(self, symbol: str, known: dict[str, Order], cursor: int | None) -> FillBatch:
        if cursor is None:  # a new instance: the account's older trades are not ours
            return FillBatch([], self.client.milliseconds())
        # Look back a while: a trade can be reported after later ones; the store books each once.
        trades = await self._call(self.client.fetch_my_trades, symbol, max(0, cursor - TRADE_LOOKBACK_MS))
        fills = []
        for trade in trades:
            order_id = str(trade.get("order"))
            order = known.get(order_id)
            client_id = order.client_id if order is not None else await self._client_id_of(symbol, order_id)
            if client_id is not None:
                fills.extend(self._fills(client_id, symbol, [trade]))
            cursor = max(cursor, int(trade.get("timestamp") or 0))
        return FillBatch(fills, cursor)

    async def _client_id_of(self, symbol: str, order_id: str) -> str | None:
        """Our client id for an exchange order we hold no record of (placed just before a crash), or
        None for the customer's own orders."""
        if order_id not in self._owner:
            try:
                raw = await self._call(self.client.fetch_order, order_id, symbol)
            except OrderNotFound:
                return None
            self._owner[order_id] = our_client_id(self.dialect, self._echoed_id(raw))
        return self._owner[order_id]

    def _echoed_id(self, order: dict):
        """The client id an order carries (ccxt leaves some, like Deribit's label, in `info`)."""
        return order.get("clientOrderId") or (order.get("info") or {}).get(self.dialect.client_id_param)

    def _fills(self, client_id: str, symbol: str, trades: list[dict]) -> list[Fill]:
        """ccxt trades as fills; a trade without an id or a price is not booked (never at 0)."""
        market = self.markets[symbol]
        fills = []
        for trade in trades:
            price, amount = float(trade.get("price") or 0), float(trade.get("amount") or 0)
            if not trade.get("id") or price <= 0 or amount <= 0:
                continue
            fee = trade.get("fee") or {}
            side = trade.get("side")
            default_fee_coin = (
                market.base if side == "buy" and self.dialect.buy_fee_currency == "base" else market.quote
            )
            fills.append(
                Fill(
                    client_id,
                    symbol,
                    side,
                    price,
                    amount,
                    float(fee.get("cost") or 0),
                    fee.get("currency") or default_fee_coin,
                    (trade.get("timestamp") or self.client.milliseconds()) / 1000,
                    str(trade["id"]),
                )
            )
        return fills

    async def balances(self) -> dict[str, float]:
        balance = await self._call(self.client.fetch_balance)
        return {k: float(v) for k, v in (balance.get("total") or {}).items() if v}

    async def close(self) -> None:
        await self.client.close()
