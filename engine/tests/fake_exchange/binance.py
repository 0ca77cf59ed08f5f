"""Binance spot REST (api/v3) over the ledger: what unmodified ccxt calls to trade spot.

Private requests are signed like Binance's: HMAC-SHA256 (hex) of the query string followed by the
form body, without the trailing `signature`, keyed by the API secret; the key in X-MBX-APIKEY."""

from __future__ import annotations

import hashlib
import hmac
import time

from aiohttp import web

from .ledger import FakeOrder, FakeTrade, Ledger, Rejected, UnknownOrder

MARKET_ID = "BTCUSDT"


def _error(code: int, message: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "msg": message}, status=status)


def _num(value: float) -> str:
    return f"{value:.8f}"


class BinanceApi:
    def __init__(self, ledger: Ledger, *, api_key: str, secret: str, drop_reply):
        self.ledger = ledger
        self.api_key = api_key
        self.secret = secret
        self.drop_reply = drop_reply

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v3/exchangeInfo", self.exchange_info),
            web.get("/api/v3/time", self.server_time),
            web.get("/api/v3/ticker/24hr", self.ticker),
            web.get("/api/v3/klines", self.klines),
            # ccxt also loads the futures markets; this exchange has none.
            web.get("/fapi/v1/exchangeInfo", self.no_markets),
            web.get("/dapi/v1/exchangeInfo", self.no_markets),
            web.get("/sapi/v1/capital/config/getall", self.signed(self.nothing)),
            web.get("/sapi/v1/margin/allPairs", self.signed(self.nothing)),  # no margin trading here
            web.get("/sapi/v1/margin/isolated/allPairs", self.signed(self.nothing)),
            web.get("/api/v3/account", self.signed(self.account)),
            web.get("/api/v3/openOrders", self.signed(self.open_orders)),
            web.get("/api/v3/allOrders", self.signed(self.all_orders)),
            web.get("/api/v3/order", self.signed(self.get_order)),
            web.post("/api/v3/order", self.signed(self.create_order)),
            web.delete("/api/v3/order", self.signed(self.cancel_order)),
            web.get("/api/v3/myTrades", self.signed(self.my_trades)),
        ]

    # --- signing ---------------------------------------------------------------------------------

    def signed(self, handler):
        async def checked(request: web.Request) -> web.Response:
            if request.headers.get("X-MBX-APIKEY") != self.api_key:
                return _error(-2015, "Invalid API-key, IP, or permissions for action.", 401)
            body = await request.text()
            payload = request.query_string + body
            unsigned, _, signature = payload.rpartition("&signature=")
            expected = hmac.new(self.secret.encode(), unsigned.encode(), hashlib.sha256).hexdigest()
            if not signature or not hmac.compare_digest(signature, expected):
                return _error(-1022, "Signature for this request is not valid.")
            params = dict(request.query)
            params.update(await request.post() if body else {})
            timestamp, window = int(params.get("timestamp", 0)), int(params.get("recvWindow", 5000))
            if abs(time.time() * 1000 - timestamp) > window:
                return _error(-1021, "Timestamp for this request is outside of the recvWindow.")
            return await handler(request, params)

        return checked

    # --- public ----------------------------------------------------------------------------------

    async def exchange_info(self, request):
        ledger = self.ledger
        symbol = {
            "symbol": MARKET_ID,
            "status": "TRADING",
            "baseAsset": ledger.base,
            "baseAssetPrecision": 8,
            "quoteAsset": ledger.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": False,
            "ocoAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "permissions": ["SPOT"],
            "permissionSets": [["SPOT"]],
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": "0.01"},
                {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.00000", "stepSize": "0.00001"},
                {
                    "filterType": "NOTIONAL",
                    "minNotional": _num(ledger.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": "9000000.00",
                    "applyMaxToMarket": False,
                },
            ],
        }
        return web.json_response(
            {"timezone": "UTC", "serverTime": int(time.time() * 1000), "rateLimits": [], "symbols": [symbol]}
        )

    async def no_markets(self, request):
        return web.json_response({"timezone": "UTC", "serverTime": int(time.time() * 1000), "symbols": []})

    async def server_time(self, request):
        return web.json_response({"serverTime": int(time.time() * 1000)})

    async def ticker(self, request):
        price = _num(self.ledger.price)
        now = int(time.time() * 1000)
        return web.json_response(
            {
                "symbol": MARKET_ID,
                "lastPrice": price,
                "bidPrice": price,
                "askPrice": price,
                "openPrice": price,
                "highPrice": price,
                "lowPrice": price,
                "volume": "0",
                "quoteVolume": "0",
                "openTime": now - 86_400_000,
                "closeTime": now,
                "count": 0,
            }
        )

    async def klines(self, request):
        periods = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}
        query = request.query
        since = int(query["startTime"]) if "startTime" in query else None
        rows = self.ledger.candles(periods[query["interval"]], since, int(query.get("limit", 500)))
        return web.json_response(
            [
                [ts, _num(o), _num(h), _num(low), _num(c), _num(v), ts + 59_999, "0", 0, "0", "0", "0"]
                for ts, o, h, low, c, v in rows
            ]
        )

    # --- private ---------------------------------------------------------------------------------

    async def nothing(self, request, params):
        return web.json_response([])

    async def account(self, request, params):
        ledger = self.ledger
        with ledger.lock:
            balances = [
                {
                    "asset": asset,
                    "free": _num(total - ledger.locked(asset)),
                    "locked": _num(ledger.locked(asset)),
                }
                for asset, total in ledger.balances.items()
            ]
        return web.json_response({"accountType": "SPOT", "canTrade": True, "balances": balances})

    def order_json(self, order: FakeOrder, *, with_fills: bool = False) -> dict:
        status = {"open": "PARTIALLY_FILLED" if order.filled else "NEW", "filled": "FILLED"}.get(
            order.status, "CANCELED" if order.status == "canceled" else "EXPIRED"
        )
        data = {
            "symbol": MARKET_ID,
            "orderId": int(order.id),
            "clientOrderId": order.client_id,
            "price": _num(order.price),
            "origQty": _num(order.amount),
            "executedQty": _num(order.filled),
            "cummulativeQuoteQty": _num(order.cost),
            "status": status,
            "timeInForce": "GTC",
            "type": "MARKET" if order.type == "market" else ("LIMIT_MAKER" if order.post_only else "LIMIT"),
            "side": order.side.upper(),
            "time": order.created_ms,
            "transactTime": order.created_ms,
            "updateTime": order.updated_ms,
            "isWorking": order.status == "open",
        }
        if with_fills:
            data["fills"] = [
                {
                    "price": _num(t.price),
                    "qty": _num(t.amount),
                    "commission": _num(t.fee),
                    "commissionAsset": t.fee_currency,
                    "tradeId": int(t.id),
                }
                for t in self.ledger.order_trades(order)
            ]
        return data

    def trade_json(self, trade: FakeTrade) -> dict:
        return {
            "symbol": MARKET_ID,
            "id": int(trade.id),
            "orderId": int(trade.order_id),
            "orderListId": -1,
            "price": _num(trade.price),
            "qty": _num(trade.amount),
            "quoteQty": _num(trade.price * trade.amount),
            "commission": _num(trade.fee),
            "commissionAsset": trade.fee_currency,
            "time": trade.timestamp_ms,
            "isBuyer": trade.side == "buy",
            "isMaker": trade.maker,
            "isBestMatch": True,
        }

    async def open_orders(self, request, params):
        return web.json_response([self.order_json(o) for o in self.ledger.open_orders()])

    async def all_orders(self, request, params):
        with self.ledger.lock:
            orders = list(self.ledger.orders.values())
        return web.json_response([self.order_json(o) for o in orders])

    def _lookup(self, params) -> FakeOrder:
        order_id = params.get("orderId")
        return self.ledger.find(order_id=order_id, client_id=None if order_id else params.get("origClientOrderId"))

    async def get_order(self, request, params):
        try:
            return web.json_response(self.order_json(self._lookup(params)))
        except UnknownOrder:
            return _error(-2013, "Order does not exist.")

    async def create_order(self, request, params):
        kind = params.get("type", "")
        if kind not in ("LIMIT", "LIMIT_MAKER", "MARKET"):
            return _error(-1116, "Invalid orderType.")
        try:
            order = self.ledger.place(
                side=params["side"].lower(),
                type="market" if kind == "MARKET" else "limit",
                amount=float(params["quantity"]),
                price=float(params["price"]) if kind != "MARKET" else None,
                client_id=params.get("newClientOrderId") or f"x-fake{int(time.time() * 1e6)}",
                post_only=kind == "LIMIT_MAKER",
            )
        except Rejected as refused:
            message = {
                "would_take": "Order would immediately match and take.",
                "insufficient_funds": "Account has insufficient balance for requested action.",
            }.get(refused.reason, f"Filter failure: {refused}")
            return _error(-2010 if refused.reason != "bad_order" else -1013, message)
        if self.drop_reply(request):
            return web.Response()  # never arrives: the connection is already cut
        if order.type == "market" and self.ledger.scenarios.market_reply_without_fills:
            # An acknowledgement only, as some exchanges answer market orders.
            return web.json_response(
                {
                    "symbol": MARKET_ID,
                    "orderId": int(order.id),
                    "clientOrderId": order.client_id,
                    "transactTime": order.created_ms,
                }
            )
        return web.json_response(self.order_json(order, with_fills=True))

    async def cancel_order(self, request, params):
        order_id = params.get("orderId")
        client_id = None if order_id else params.get("origClientOrderId")
        try:
            order = self.ledger.cancel(order_id=order_id, client_id=client_id)
        except UnknownOrder:
            return _error(-2011, "Unknown order sent.")
        return web.json_response(self.order_json(order))

    async def my_trades(self, request, params):
        since = int(params["startTime"]) if "startTime" in params else None
        trades = self.ledger.visible_trades(since_ms=since, order_id=params.get("orderId"))
        if "fromId" in params:
            trades = [t for t in trades if int(t.id) >= int(params["fromId"])]
        if "endTime" in params:
            trades = [t for t in trades if t.timestamp_ms <= int(params["endTime"])]
        limit = int(params.get("limit", 500))
        return web.json_response([self.trade_json(t) for t in trades[:limit]])
