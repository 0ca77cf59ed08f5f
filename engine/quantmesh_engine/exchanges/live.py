"""Live exchanges through ccxt (async): any exchange ccxt supports.

Rounding uses ccxt's own precision rules for the market; minimum amount and cost come from
the market's limits. ccxt's rate limiter paces requests; errors are mapped to the engine's
three kinds (temporary, authentication, rejected order) so the trader knows what to do.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

import ccxt
import ccxt.async_support as ccxt_async
from ccxt.base.decimal_to_precision import TRUNCATE, decimal_to_precision

from ..secrets import ExchangeSecrets
from .base import AuthError, Exchange, ExchangeError, Fill, Market, Order, OrderRejected


def _translate(error: Exception) -> ExchangeError:
    if isinstance(error, ccxt.AuthenticationError | ccxt.PermissionDenied | ccxt.AccountSuspended):
        return AuthError(f"the exchange rejected the API key: {type(error).__name__}")
    if isinstance(error, ccxt.InvalidOrder | ccxt.InsufficientFunds | ccxt.OrderNotFound):
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
        self.supports_post_only = bool(self.client.has.get("createPostOnlyOrder", True))
        self.markets: dict[str, Market] = {}
        self._seen_trades: set[str] = set()
        self._since: dict[str, int] = {}

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
            min_cost=float((limits.get("cost") or {}).get("min") or 0),
        )

    def market(self, symbol: str) -> Market:
        return self.markets[symbol]

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

    async def place_limit(self, order: Order, *, post_only: bool) -> Order:
        params = {"clientOrderId": order.client_id}
        if post_only and self.supports_post_only:
            params["postOnly"] = True
        placed = await self._call(
            self.client.create_order, order.symbol, "limit", order.side, order.amount, order.price, params
        )
        order.exchange_id = str(placed.get("id"))
        order.status = "open"
        return order

    async def place_market(self, symbol: str, side: str, amount: float, client_id: str) -> list[Fill]:
        placed = await self._call(
            self.client.create_order, symbol, "market", side, amount, None, {"clientOrderId": client_id}
        )
        fee = placed.get("fee") or {}
        return [
            Fill(
                client_id,
                symbol,
                side,
                float(placed.get("average") or placed.get("price") or 0),
                float(placed.get("filled") or amount),
                float(fee.get("cost") or 0),
                fee.get("currency") or self.markets[symbol].quote,
                (placed.get("timestamp") or self.client.milliseconds()) / 1000,
                str(placed.get("id")),
            )
        ]

    async def cancel(self, order: Order) -> None:
        # Already gone (filled or canceled): reconciliation books what happened.
        with contextlib.suppress(OrderRejected):
            await self._call(self.client.cancel_order, order.exchange_id, order.symbol)

    async def fetch_open_orders(self, symbol: str) -> list[Order]:
        rows = await self._call(self.client.fetch_open_orders, symbol)
        return [
            Order(
                str(r.get("clientOrderId") or r["id"]),
                symbol,
                r["side"],
                float(r["price"]),
                float(r["amount"]),
                level=0,
                exchange_id=str(r["id"]),
            )
            for r in rows
        ]

    async def fetch_fills(self, symbol: str, open_orders: dict[str, Order]) -> list[Fill]:
        by_exchange_id = {o.exchange_id: o for o in open_orders.values() if o.symbol == symbol}
        trades = await self._call(self.client.fetch_my_trades, symbol, self._since.get(symbol))
        fills = []
        for trade in trades:
            trade_id = str(trade.get("id"))
            if trade_id in self._seen_trades:
                continue
            self._seen_trades.add(trade_id)
            self._since[symbol] = max(self._since.get(symbol, 0), int(trade.get("timestamp") or 0))
            order = by_exchange_id.get(str(trade.get("order")))
            if order is None:
                continue
            fee = trade.get("fee") or {}
            fills.append(
                Fill(
                    order.client_id,
                    symbol,
                    trade["side"],
                    float(trade["price"]),
                    float(trade["amount"]),
                    float(fee.get("cost") or 0),
                    fee.get("currency") or self.markets[symbol].quote,
                    (trade.get("timestamp") or 0) / 1000,
                    trade_id,
                )
            )
        return fills

    async def balances(self) -> dict[str, float]:
        balance = await self._call(self.client.fetch_balance)
        return {k: float(v) for k, v in (balance.get("total") or {}).items() if v}

    async def close(self) -> None:
        await self.client.close()
