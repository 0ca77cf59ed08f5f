"""OKX v5 REST over the ledger: what unmodified ccxt calls to trade spot (cash mode).

Private requests are signed like OKX's: base64 HMAC-SHA256 of timestamp + method + request path
(with its query) + body, keyed by the secret; key, passphrase and timestamp in OK-ACCESS-* headers.
A post-only order that would take is accepted and canceled at once, as OKX does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime

from aiohttp import web

from .ledger import FakeOrder, FakeTrade, Ledger, Rejected, UnknownOrder

MARKET_ID = "BTC-USDT"


def _reply(data: list, code: str = "0", msg: str = "", status: int = 200) -> web.Response:
    return web.json_response({"code": code, "msg": msg, "data": data}, status=status)


def _num(value: float) -> str:
    return f"{value:.8f}"


class OkxApi:
    def __init__(self, ledger: Ledger, *, api_key: str, secret: str, passphrase: str, drop_reply):
        self.ledger = ledger
        self.api_key = api_key
        self.secret = secret
        self.passphrase = passphrase
        self.drop_reply = drop_reply

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v5/public/instruments", self.instruments),
            web.get("/api/v5/public/time", self.server_time),
            web.get("/api/v5/market/ticker", self.ticker),
            web.get("/api/v5/asset/currencies", self.signed(self.currencies)),
            web.get("/api/v5/account/balance", self.signed(self.balance)),
            web.get("/api/v5/trade/orders-pending", self.signed(self.orders_pending)),
            web.get("/api/v5/trade/orders-history", self.signed(self.orders_history)),
            web.get("/api/v5/trade/orders-history-archive", self.signed(self.orders_history)),
            web.get("/api/v5/trade/order", self.signed(self.get_order)),
            web.post("/api/v5/trade/order", self.signed(self.create_orders)),
            web.post("/api/v5/trade/batch-orders", self.signed(self.create_orders)),
            web.post("/api/v5/trade/cancel-order", self.signed(self.cancel_order)),
            web.get("/api/v5/trade/fills", self.signed(self.fills)),
            web.get("/api/v5/trade/fills-history", self.signed(self.fills)),
        ]

    # --- signing ---------------------------------------------------------------------------------

    def signed(self, handler):
        async def checked(request: web.Request) -> web.Response:
            headers = request.headers
            if headers.get("OK-ACCESS-KEY") != self.api_key:
                return _reply([], "50111", "Invalid OK-ACCESS-KEY", 401)
            if headers.get("OK-ACCESS-PASSPHRASE") != self.passphrase:
                return _reply([], "50105", "Your OK-ACCESS-PASSPHRASE is incorrect", 401)
            timestamp = headers.get("OK-ACCESS-TIMESTAMP", "")
            body = await request.text()
            message = timestamp + request.method + request.path_qs + body
            expected = base64.b64encode(hmac.new(self.secret.encode(), message.encode(), hashlib.sha256).digest())
            if not hmac.compare_digest(headers.get("OK-ACCESS-SIGN", "").encode(), expected):
                return _reply([], "50113", "Invalid Sign", 401)
            try:
                sent = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
            except ValueError:
                return _reply([], "50112", "Invalid OK-ACCESS-TIMESTAMP", 401)
            if abs(time.time() - sent) > 30:
                return _reply([], "50102", "Timestamp request expired", 401)
            return await handler(request, json.loads(body) if body else None)

        return checked

    # --- public ----------------------------------------------------------------------------------

    async def instruments(self, request):
        if request.query.get("instType") != "SPOT":
            return _reply([])
        ledger = self.ledger
        return _reply(
            [
                {
                    "instType": "SPOT",
                    "instId": MARKET_ID,
                    "baseCcy": ledger.base,
                    "quoteCcy": ledger.quote,
                    "settleCcy": "",
                    "ctVal": "",
                    "ctMult": "",
                    "ctValCcy": "",
                    "optType": "",
                    "stk": "",
                    "listTime": "1606468572000",
                    "expTime": "",
                    "lever": "",
                    "tickSz": "0.01",
                    "lotSz": "0.00001",
                    "minSz": "0.00001",
                    "ctType": "",
                    "alias": "",
                    "state": "live",
                    "maxLmtSz": "9999999999",
                    "maxMktSz": "1000000",
                    "uly": "",
                    "instFamily": "",
                    "ruleType": "normal",
                }
            ]
        )

    async def server_time(self, request):
        return _reply([{"ts": str(int(time.time() * 1000))}])

    async def ticker(self, request):
        price = _num(self.ledger.price)
        return _reply(
            [
                {
                    "instType": "SPOT",
                    "instId": MARKET_ID,
                    "last": price,
                    "lastSz": "0",
                    "askPx": price,
                    "askSz": "1",
                    "bidPx": price,
                    "bidSz": "1",
                    "open24h": price,
                    "high24h": price,
                    "low24h": price,
                    "volCcy24h": "0",
                    "vol24h": "0",
                    "ts": str(int(time.time() * 1000)),
                    "sodUtc0": price,
                    "sodUtc8": price,
                }
            ]
        )

    # --- private ---------------------------------------------------------------------------------

    async def currencies(self, request, body):
        return _reply([])

    async def balance(self, request, body):
        ledger = self.ledger
        with ledger.lock:
            details = [
                {
                    "ccy": asset,
                    "eq": _num(total),
                    "cashBal": _num(total),
                    "availBal": _num(total - ledger.locked(asset)),
                    "availEq": _num(total - ledger.locked(asset)),
                    "frozenBal": _num(ledger.locked(asset)),
                    "uTime": str(int(time.time() * 1000)),
                }
                for asset, total in ledger.balances.items()
            ]
        return _reply([{"uTime": str(int(time.time() * 1000)), "totalEq": "0", "details": details}])

    def order_json(self, order: FakeOrder) -> dict:
        trades = self.ledger.order_trades(order)
        last = trades[-1] if trades else None
        state = {"filled": "filled", "canceled": "canceled"}.get(
            order.status, "partially_filled" if order.filled else "live"
        )
        fee_by_currency: dict[str, float] = {}
        for trade in trades:
            fee_by_currency[trade.fee_currency] = fee_by_currency.get(trade.fee_currency, 0.0) + trade.fee
        fee_currency, fee = next(iter(fee_by_currency.items()), (self.ledger.quote, 0.0))
        return {
            "instType": "SPOT",
            "instId": MARKET_ID,
            "ordId": order.id,
            "clOrdId": order.client_id,
            "tag": "",
            "px": _num(order.price) if order.type == "limit" else "",
            "sz": _num(order.amount),
            "ordType": "market" if order.type == "market" else ("post_only" if order.post_only else "limit"),
            "side": order.side,
            "posSide": "net",
            "tdMode": "cash",
            "tgtCcy": "base_ccy" if order.type == "market" else "",
            "accFillSz": _num(order.filled),
            "avgPx": _num(order.average) if order.filled else "",
            "fillPx": _num(last.price) if last else "",
            "fillSz": _num(last.amount) if last else "0",
            "tradeId": last.id if last else "",
            "fillTime": str(last.timestamp_ms) if last else "",
            "state": state,
            "cancelSource": "31" if order.status == "canceled" and not order.filled and order.post_only else "",
            "fee": _num(-fee),
            "feeCcy": fee_currency,
            "rebate": "0",
            "rebateCcy": self.ledger.quote,
            "cTime": str(order.created_ms),
            "uTime": str(order.updated_ms),
        }

    def trade_json(self, trade: FakeTrade) -> dict:
        return {
            "instType": "SPOT",
            "instId": MARKET_ID,
            "tradeId": trade.id,
            "ordId": trade.order_id,
            "clOrdId": trade.client_id,
            "billId": trade.id,
            "tag": "",
            "fillPx": _num(trade.price),
            "fillSz": _num(trade.amount),
            "side": trade.side,
            "posSide": "net",
            "execType": "M" if trade.maker else "T",
            "fee": _num(-trade.fee),
            "feeCcy": trade.fee_currency,
            "ts": str(trade.timestamp_ms),
            "fillTime": str(trade.timestamp_ms),
        }

    async def orders_pending(self, request, body):
        return _reply([self.order_json(o) for o in reversed(self.ledger.open_orders())])

    async def orders_history(self, request, body):
        with self.ledger.lock:
            done = [o for o in self.ledger.orders.values() if o.status != "open"]
        wanted = request.query.get("state")
        listed = [self.order_json(o) for o in reversed(done)]
        return _reply([o for o in listed if not wanted or o["state"] == wanted])

    async def get_order(self, request, body):
        query = request.query
        try:
            order = self.ledger.find(order_id=query.get("ordId"), client_id=query.get("clOrdId"))
        except UnknownOrder:
            return _reply([], "51603", "Order does not exist")
        return _reply([self.order_json(order)])

    async def create_orders(self, request, body):
        requested = body if isinstance(body, list) else [body]
        results = []
        for item in requested:
            kind = item.get("ordType")
            if kind not in ("limit", "post_only", "market"):
                results.append(
                    {
                        "clOrdId": item.get("clOrdId", ""),
                        "ordId": "",
                        "sCode": "51000",
                        "sMsg": "Parameter ordType error",
                    }
                )
                continue
            try:
                order = self.ledger.place(
                    side=item["side"],
                    type="market" if kind == "market" else "limit",
                    amount=float(item["sz"]),
                    price=float(item["px"]) if kind != "market" else None,
                    client_id=item.get("clOrdId") or "",
                    post_only=kind == "post_only",
                    cancel_if_would_take=True,
                )
            except Rejected as refused:
                code, message = {
                    "insufficient_funds": ("51008", "Order failed. Insufficient USDT balance in account."),
                }.get(refused.reason, ("51000", f"Parameter sz error: {refused}"))
                results.append({"clOrdId": item.get("clOrdId", ""), "ordId": "", "sCode": code, "sMsg": message})
                continue
            results.append(
                {
                    "clOrdId": order.client_id,
                    "ordId": order.id,
                    "tag": "",
                    "sCode": "0",
                    "sMsg": "",
                    "ts": str(order.created_ms),
                }
            )
        if self.drop_reply(request):
            return web.Response()  # never arrives: the connection is already cut
        failed = [r for r in results if r["sCode"] != "0"]
        if failed:
            return _reply(results, "1", "All operations failed" if len(failed) == len(results) else "")
        return _reply(results)

    async def cancel_order(self, request, body):
        try:
            order = self.ledger.cancel(order_id=body.get("ordId"), client_id=body.get("clOrdId"))
        except UnknownOrder:
            return _reply(
                [
                    {
                        "clOrdId": body.get("clOrdId", ""),
                        "ordId": body.get("ordId", ""),
                        "sCode": "51400",
                        "sMsg": "Order cancellation failed as the order has been filled, canceled or does not exist",
                    }
                ],
                "1",
                "",
            )
        return _reply([{"clOrdId": order.client_id, "ordId": order.id, "sCode": "0", "sMsg": ""}])

    async def fills(self, request, body):
        query = request.query
        since = int(query["begin"]) if "begin" in query else None
        trades = self.ledger.visible_trades(since_ms=since, order_id=query.get("ordId"))
        if "end" in query:
            trades = [t for t in trades if t.timestamp_ms <= int(query["end"])]
        limit = int(query.get("limit", 100))
        return _reply([self.trade_json(t) for t in reversed(trades)][:limit])
