"""A Stripe API on loopback for the billing tests.

`localstripe` (a stateful fake Stripe) answers what it covers: customers, products. What it lacks
(the account, prices, Checkout and customer-portal sessions with Stripe Tax fields, webhook
endpoints, customer balance transactions, subscriptions with pending updates (`always_invoice` +
`pending_if_incomplete`) and subscription schedules, invoices, charges and card payment methods, in
the current API's shape) is answered from recorded payloads (`stripe_payloads/*.json`, the shape the pinned API version
returns), held here with their latest state so the portal reads what Stripe would answer now.

`StripeTestServer.deliver` signs an event like Stripe does and posts it to the portal's real
dj-stripe webhook endpoint.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from localstripe import resources as localstripe_resources
from localstripe import server as localstripe_server

PAYLOADS = Path(__file__).parent / "stripe_payloads"


def payload(name: str) -> dict:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def _int(value):
    return int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else value


def _bool(value):
    return {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value


class StripeTestServer:
    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}  # recorded objects by id, in their latest state
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, form) of recorded routes
        self.url = ""
        self.declining: set[str] = set()  # customers whose card Stripe declines
        # Called as (method, path) on the server's thread before each request is answered, i.e. while
        # the portal waits for Stripe: tests look at the database from another connection then.
        self.while_answering: Callable[[str, str], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        app = localstripe_server.app
        app.middlewares.insert(0, self._recorded_routes)
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, name="stripe-test-server", daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the Stripe test server did not start")

    def reset(self) -> None:
        self.objects.clear()
        self.requests.clear()
        self.declining.clear()
        self.while_answering = None
        localstripe_resources.store.clear()

    # -- recorded objects ------------------------------------------------------------------------
    def put(self, obj: dict) -> dict:
        self.objects[obj["id"]] = obj
        return obj

    def subscription(
        self,
        *,
        customer: str,
        price: dict,
        status: str = "active",
        subscription_id: str | None = None,
        cancel_at_period_end: bool = False,
        period_days: int = 30,
    ) -> dict:
        """Record a subscription's current state at Stripe and return it."""
        sub = payload("subscription")
        sub["id"] = subscription_id or _new_id("sub_")
        now = int(time.time())
        sub.update(customer=customer, status=status, cancel_at_period_end=cancel_at_period_end, created=now)
        item = sub["items"]["data"][0]
        item.update(
            id=_new_id("si_"),
            subscription=sub["id"],
            price=copy.deepcopy(price),
            current_period_start=now,
            current_period_end=now + period_days * 86400,
        )
        sub["items"]["url"] = f"/v1/subscription_items?subscription={sub['id']}"
        if status == "canceled":
            sub.update(canceled_at=now, ended_at=now)
        return self.put(sub)

    def invoice(self, *, subscription: dict, status: str = "paid", amount: int | None = None) -> dict:
        invoice = payload("invoice")
        invoice["id"] = _new_id("in_")
        price = subscription["items"]["data"][0]["price"]
        amount = price["unit_amount"] if amount is None else amount
        paid = status == "paid"
        now = int(time.time())
        invoice.update(
            customer=subscription["customer"],
            status=status,
            amount_due=amount,
            amount_paid=amount if paid else 0,
            amount_remaining=0 if paid else amount,
            total=amount,
            subtotal=amount,
            created=now,
            number=f"QM-{secrets.randbelow(10**6):06d}",
        )
        invoice["parent"]["subscription_details"]["subscription"] = subscription["id"]
        invoice["lines"]["data"][0]["amount"] = amount
        invoice["lines"]["data"][0]["invoice"] = invoice["id"]
        invoice["lines"]["data"][0]["pricing"]["price_details"]["price"] = price["id"]
        invoice["lines"]["url"] = f"/v1/invoices/{invoice['id']}/lines"
        invoice["status_transitions"]["paid_at"] = now if paid else None
        return self.put(invoice)

    def pay(self, invoice: dict) -> dict:
        """The customer pays an open invoice (say, on its hosted page): a pending subscription update
        it carries is applied, as Stripe does."""
        invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0)
        invoice["status_transitions"]["paid_at"] = int(time.time())
        sub = self.objects.get(invoice["parent"]["subscription_details"]["subscription"] or "")
        if sub and sub.get("pending_update"):
            self._apply_items(sub, sub["pending_update"]["subscription_items"])
            sub["pending_update"] = None
        return invoice

    def period_ends(self, sub: dict) -> dict:
        """The subscription's paid period ends: its schedule's next phase starts (then the schedule is
        released), and a new period begins."""
        schedule = self.objects.get(sub.get("schedule") or "")
        now = int(time.time())
        if schedule and len(schedule["phases"]) > 1:
            following = schedule["phases"][1]
            self._apply_items(sub, [{"id": sub["items"]["data"][0]["id"], "price": following["items"][0]["price"]}])
            schedule.update(status="released", released_subscription=sub["id"])
            sub["schedule"] = None
        interval = sub["items"]["data"][0]["price"]["recurring"]["interval"]
        sub["items"]["data"][0].update(
            current_period_start=now, current_period_end=now + (365 if interval == "year" else 30) * 86400
        )
        return sub

    def card(self, *, customer: str, fingerprint: str) -> dict:
        """A card payment method attached to `customer`."""
        return self.put(
            {
                "id": _new_id("pm_"),
                "object": "payment_method",
                "type": "card",
                "customer": customer,
                "card": {"brand": "visa", "last4": "4242", "fingerprint": fingerprint},
                "created": int(time.time()),
                "livemode": False,
                "metadata": {},
            }
        )

    def charge(self, *, invoice: dict, refunded: bool = False) -> dict:
        charge = payload("charge")
        charge.update(
            id=_new_id("ch_"),
            customer=invoice["customer"],
            amount=invoice["amount_paid"],
            amount_refunded=invoice["amount_paid"] if refunded else 0,
            refunded=refunded,
            currency=invoice["currency"],
            created=int(time.time()),
        )
        return self.put(charge)

    def _apply_items(self, sub: dict, changes: list[dict]) -> None:
        for change in changes:
            item = next(i for i in sub["items"]["data"] if i["id"] == change["id"])
            item["price"] = copy.deepcopy(self.objects[change["price"]])

    def _of(self, kind: str, **match) -> list[dict]:
        return [
            o for o in self.objects.values() if o.get("object") == kind and all(o.get(k) == v for k, v in match.items())
        ]

    # -- webhooks --------------------------------------------------------------------------------
    def event(self, event_type: str, obj: dict) -> dict:
        event = payload("event")
        event.update(id=_new_id("evt_"), type=event_type, created=int(time.time()))
        event["data"]["object"] = copy.deepcopy(obj)
        return event

    @staticmethod
    def signature(body: bytes, secret: str, timestamp: int | None = None) -> str:
        timestamp = int(time.time()) if timestamp is None else timestamp
        mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        return f"t={timestamp},v1={mac}"

    def deliver(self, client, endpoint, event: dict, *, secret: str | None = None):
        """POST `event` to the portal's dj-stripe endpoint, signed as Stripe signs it."""
        body = json.dumps(event).encode()
        return client.post(
            f"/stripe/webhook/{endpoint.djstripe_uuid}/",
            data=body,
            content_type="application/json",
            headers={"Stripe-Signature": self.signature(body, secret or endpoint.secret)},
        )

    # -- the routes localstripe lacks ------------------------------------------------------------
    @web.middleware
    async def _recorded_routes(self, request: web.Request, handler):
        path, method = request.path, request.method
        if self.while_answering is not None:
            self.while_answering(method, path)
        form = await localstripe_server.get_post_data(request) if method == "POST" else dict(request.query)
        form = form or {}
        answer = self._answer(method, path, form, request)
        if answer is None:
            return await handler(request)
        self.requests.append((method, path, form))
        status, body = answer
        return web.json_response(body, status=status)

    def _answer(self, method: str, path: str, form: dict, request: web.Request):
        if path == "/v1/account" and method == "GET":
            return 200, payload("account")
        match = re.fullmatch(r"/v1/products/(\w+)/features", path)
        if match and method == "GET":  # product features (entitlements): none are sold here
            return 200, {"object": "list", "data": [], "has_more": False, "url": path}
        if path == "/v1/prices":
            return self._prices(method, form, request)
        if path == "/v1/subscriptions" and method == "GET":
            found = self._of("subscription", customer=form.get("customer"))
            if form.get("status", "all") != "all":
                found = [sub for sub in found if sub["status"] == form["status"]]
            return 200, {"object": "list", "data": found, "has_more": False, "url": path}
        if path == "/v1/checkout/sessions" and method == "GET":
            found = self._of("checkout.session", customer=form.get("customer"))
            if "status" in form:
                found = [session for session in found if session["status"] == form["status"]]
            return 200, {"object": "list", "data": found, "has_more": False, "url": path}
        if path == "/v1/payment_methods" and method == "GET":
            found = self._of("payment_method", customer=form.get("customer"), type=form.get("type", "card"))
            return 200, {"object": "list", "data": found, "has_more": False, "url": path}
        match = re.fullmatch(r"/v1/checkout/sessions/(\w+)/expire", path)
        if match and method == "POST" and match.group(1) in self.objects:
            self.objects[match.group(1)]["status"] = "expired"
            return 200, self.objects[match.group(1)]
        if path == "/v1/subscription_schedules" and method == "POST":
            if self.objects[form["from_subscription"]].get("schedule"):
                return 400, {"error": {"type": "invalid_request_error", "message": "Already attached to a schedule."}}
            return 200, self._schedule_create(form["from_subscription"])
        match = re.fullmatch(r"/v1/subscription_schedules/(\w+)(/release)?", path)
        if match and match.group(1) in self.objects:
            schedule = self.objects[match.group(1)]
            if method == "POST" and match.group(2):
                schedule.update(status="released")
                self.objects[schedule["subscription"]]["schedule"] = None
            elif method == "POST":
                schedule.update(
                    phases=form.get("phases", schedule["phases"]), end_behavior=form.get("end_behavior", "release")
                )
            return 200, schedule
        match = re.fullmatch(r"/v1/(prices|subscriptions|invoices|checkout/sessions|charges|disputes)/([\w]+)", path)
        if match and match.group(2) in self.objects:
            return self._object(method, match.group(1), self.objects[match.group(2)], form)
        if match and match.group(1) in ("prices", "checkout/sessions"):
            return 404, {"error": {"type": "invalid_request_error", "message": f"No such object: '{match.group(2)}'"}}
        if path == "/v1/checkout/sessions" and method == "POST":
            session = payload("checkout_session")
            session.update(
                id=_new_id("cs_test_"),
                customer=form.get("customer"),
                client_reference_id=form.get("client_reference_id"),
                metadata=form.get("metadata", {}),
                success_url=form.get("success_url"),
                cancel_url=form.get("cancel_url"),
                created=int(time.time()),
            )
            session["url"] = f"https://checkout.stripe.com/c/pay/{session['id']}"
            session["qm_line_items"] = form.get("line_items")
            session["automatic_tax"]["enabled"] = _bool(form.get("automatic_tax", {}).get("enabled", False))
            session["tax_id_collection"] = {"enabled": _bool(form.get("tax_id_collection", {}).get("enabled", False))}
            session["billing_address_collection"] = form.get("billing_address_collection")
            session["customer_update"] = form.get("customer_update")
            return 200, self.put(session)
        if path == "/v1/billing_portal/sessions" and method == "POST":
            session = payload("billing_portal_session")
            session.update(id=_new_id("bps_"), customer=form.get("customer"), return_url=form.get("return_url"))
            session["url"] = f"https://billing.stripe.com/p/session/{session['id']}"
            return 200, session
        if path == "/v1/webhook_endpoints" and method == "POST":
            endpoint = payload("webhook_endpoint")
            endpoint.update(
                id=_new_id("we_"),
                url=form.get("url"),
                enabled_events=form.get("enabled_events", []),
                metadata=form.get("metadata", {}),
                secret=_new_id("whsec_"),
                created=int(time.time()),
            )
            return 200, endpoint
        match = re.fullmatch(r"/v1/customers/(\w+)/balance_transactions", path)
        if match and method == "POST":
            transaction = payload("balance_transaction")
            transaction.update(
                id=_new_id("cbtxn_"),
                customer=match.group(1),
                amount=_int(form["amount"]),
                currency=form["currency"],
                description=form.get("description"),
                created=int(time.time()),
            )
            transaction["qm_idempotency_key"] = request.headers.get("Idempotency-Key")
            return 200, self.put(transaction)
        return None

    def _prices(self, method: str, form: dict, request: web.Request):
        prices = [o for o in self.objects.values() if o.get("object") == "price"]
        if method == "GET":
            keys = request.query.getall("lookup_keys[]", []) or request.query.getall("lookup_keys[0]", [])
            if keys:
                prices = [p for p in prices if p["lookup_key"] in keys]
            if "active" in form:
                prices = [p for p in prices if p["active"] == _bool(form["active"])]
            return 200, {"object": "list", "data": prices, "has_more": False, "url": "/v1/prices"}
        price = payload("price")
        lookup_key = form.get("lookup_key")
        if lookup_key and _bool(form.get("transfer_lookup_key")):
            for other in prices:
                if other["lookup_key"] == lookup_key:
                    other["lookup_key"] = None
        price.update(
            id=_new_id("price_"),
            product=form["product"],
            unit_amount=_int(form["unit_amount"]),
            unit_amount_decimal=str(form["unit_amount"]),
            currency=form["currency"],
            lookup_key=lookup_key,
            metadata=form.get("metadata", {}),
            created=int(time.time()),
        )
        price["recurring"]["interval"] = form["recurring"]["interval"]
        return 200, self.put(price)

    def _object(self, method: str, kind: str, obj: dict, form: dict):
        if method == "GET":
            return 200, obj
        if kind == "prices" and method == "POST":
            if "active" in form:
                obj["active"] = _bool(form["active"])
            return 200, obj
        if kind == "subscriptions" and method == "DELETE":
            now = int(time.time())
            obj.update(status="canceled", canceled_at=now, ended_at=now)
            return 200, obj
        if kind == "subscriptions" and method == "POST":
            return self._subscription_modify(obj, form)
        return 405, {"error": {"type": "invalid_request_error", "message": f"{method} not recorded for {kind}"}}

    def _subscription_modify(self, sub: dict, form: dict):
        if "cancel_at_period_end" in form:
            if form.get("payment_behavior") == "pending_if_incomplete":
                return 400, {
                    "error": {
                        "type": "invalid_request_error",
                        "message": "cancel_at_period_end cannot be "
                        "combined with payment_behavior=pending_if_incomplete",
                    }
                }
            sub["cancel_at_period_end"] = _bool(form["cancel_at_period_end"])
        changes = form.get("items", [])
        if changes and form.get("proration_behavior") == "always_invoice":
            # The difference is invoiced and charged now; with pending_if_incomplete the change waits
            # for that payment (Stripe's pending update), else it applies whatever the payment did.
            item = sub["items"]["data"][0]
            new_price = self.objects[changes[0]["price"]]
            invoice = self.invoice(
                subscription=sub,
                status="open" if sub["customer"] in self.declining else "paid",
                amount=max(new_price["unit_amount"] - item["price"]["unit_amount"], 0),
            )
            sub["latest_invoice"] = invoice["id"]
            if invoice["status"] != "paid" and form.get("payment_behavior") == "pending_if_incomplete":
                sub["pending_update"] = {"subscription_items": changes, "expires_at": int(time.time()) + 82800}
                changes = []
        self._apply_items(sub, changes)
        answer = copy.deepcopy(sub)
        if "latest_invoice" in form.get("expand", []) and sub.get("latest_invoice"):
            answer["latest_invoice"] = self.objects[sub["latest_invoice"]]
        return 200, answer

    def _schedule_create(self, subscription_id: str) -> dict:
        sub = self.objects[subscription_id]
        item = sub["items"]["data"][0]
        schedule = {
            "id": _new_id("sub_sched_"),
            "object": "subscription_schedule",
            "subscription": subscription_id,
            "customer": sub["customer"],
            "status": "active",
            "end_behavior": "release",
            "phases": [
                {
                    "start_date": item["current_period_start"],
                    "end_date": item["current_period_end"],
                    "items": [{"price": item["price"]["id"], "quantity": 1}],
                }
            ],
            "created": int(time.time()),
            "livemode": False,
            "metadata": {},
        }
        sub["schedule"] = schedule["id"]
        return self.put(schedule)


_shared: StripeTestServer | None = None


def shared_stripe_server() -> StripeTestServer:
    """The one server of this test process (localstripe's app can be started only once)."""
    global _shared
    if _shared is None:
        _shared = StripeTestServer()
        _shared.start()
    return _shared
