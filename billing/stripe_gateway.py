"""Every call billing makes to the Stripe API, in one place.

The rest of billing works on what dj-stripe has synced into its tables; only this module talks to
Stripe, always with the pinned API version, and it syncs every object Stripe returns so the local
copy is current before the caller reads it.
"""

from __future__ import annotations

from uuid import uuid4

import stripe
from django.urls import reverse
from djstripe import models as djstripe_models
from djstripe.settings import djstripe_settings

# The events the portal's endpoint asks Stripe to send (the webhook handlers in billing/webhooks.py).
WEBHOOK_EVENTS = [
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "charge.refunded",
    "charge.dispute.created",
]
# Stripe statuses of a subscription that is (or may become again) paid service: a customer with one
# of these must not be sold a second subscription.
LIVE_STATUSES = ("trialing", "active", "past_due", "unpaid")


class StripeUnavailable(Exception):
    """Stripe did not answer or refused the call; the message says why, without secrets."""


def _options() -> dict:
    return {"api_key": djstripe_settings.STRIPE_SECRET_KEY, "stripe_version": djstripe_settings.STRIPE_API_VERSION}


def _call(function, *args, **kwargs):
    try:
        return function(*args, **kwargs, **_options())
    except stripe.StripeError as error:
        raise StripeUnavailable(error.user_message or type(error).__name__) from error


def customer_for(user) -> djstripe_models.Customer:
    """The user's Stripe customer, created on first need (dj-stripe links it by metadata)."""
    customer = djstripe_models.Customer.objects.filter(subscriber=user, date_purged__isnull=True).first()
    if customer is not None:
        return customer
    try:
        customer, _ = djstripe_models.Customer.get_or_create(subscriber=user)
    except stripe.StripeError as error:
        raise StripeUnavailable(error.user_message or type(error).__name__) from error
    return customer


def checkout_session_create(
    *, user, price_id: str, plan_code: str, interval: str, success_url: str, cancel_url: str
) -> str:
    """A Stripe Checkout session selling `price_id` as a subscription; returns its URL."""
    customer = customer_for(user)
    metadata = {"qm_user": str(user.pk), "qm_plan": plan_code, "qm_interval": interval}
    session = _call(
        stripe.checkout.Session.create,
        mode="subscription",
        customer=customer.id,
        client_reference_id=str(user.pk),
        line_items=[{"price": price_id, "quantity": 1}],
        success_url=success_url,
        cancel_url=cancel_url,
        metadata=metadata,
        subscription_data={"metadata": metadata},
        # Stripe Tax computes the tax from the billing address; businesses may give their tax id,
        # which Stripe keeps on the customer (hence the customer's name and address are updated).
        automatic_tax={"enabled": True},
        tax_id_collection={"enabled": True},
        billing_address_collection="required",
        customer_update={"address": "auto", "name": "auto"},
    )
    return session["url"]


def live_subscriptions(*, user) -> list[dict]:
    """The customer's subscriptions Stripe still bills or serves, whatever this portal knows of them."""
    customer = customer_for(user)
    found = _call(stripe.Subscription.list, customer=customer.id, status="all", limit=100)
    return [sub for sub in found["data"] if sub["status"] in LIVE_STATUSES]


def open_checkout_sessions_expire(*, user) -> int:
    """Expire the customer's Checkout sessions still open, so only the newest one can be paid."""
    customer = customer_for(user)
    sessions = _call(stripe.checkout.Session.list, customer=customer.id, status="open", limit=100)["data"]
    for session in sessions:
        _call(stripe.checkout.Session.expire, session["id"])
    return len(sessions)


def portal_session_create(*, user, return_url: str) -> str:
    """Stripe's customer portal (card, invoices) for the user; returns its URL."""
    customer = customer_for(user)
    session = _call(stripe.billing_portal.Session.create, customer=customer.id, return_url=return_url)
    return session["url"]


def subscription_fetch(*, subscription_id: str) -> djstripe_models.Subscription:
    """The subscription as Stripe has it now, synced locally (webhooks may arrive late or out of order)."""
    return subscription_sync(data=_call(stripe.Subscription.retrieve, subscription_id))


def subscription_sync(*, data) -> djstripe_models.Subscription:
    return djstripe_models.Subscription.sync_from_stripe_data(data, api_key=djstripe_settings.STRIPE_SECRET_KEY)


def subscription_retrieve(*, subscription_id: str) -> djstripe_models.Subscription | None:
    """Like `subscription_fetch`, but None when Stripe has no such subscription (deleted, other account)."""
    try:
        data = stripe.Subscription.retrieve(subscription_id, **_options())
    except stripe.InvalidRequestError as error:
        if error.code == "resource_missing":
            return None
        raise StripeUnavailable(error.user_message or type(error).__name__) from error
    except stripe.StripeError as error:
        raise StripeUnavailable(error.user_message or type(error).__name__) from error
    return subscription_sync(data=data)


def _release_schedule(current) -> None:
    # A change scheduled for the period end gives way to one made now.
    if current.get("schedule"):
        schedule = current["schedule"]
        _call(stripe.SubscriptionSchedule.release, schedule if isinstance(schedule, str) else schedule["id"])


def subscription_change_price_now(*, subscription_id: str, price_id: str) -> tuple[djstripe_models.Subscription, str]:
    """Swap the subscription's item to `price_id` now and invoice the difference at once. The change
    waits for that invoice to be paid (`pending_if_incomplete`): until then Stripe keeps the old price,
    so the bigger plan starts when it is paid. Returns the subscription and, while payment is pending,
    the hosted invoice URL to pay at (else "")."""
    current = _call(stripe.Subscription.retrieve, subscription_id)
    _release_schedule(current)
    if current.get("cancel_at_period_end"):
        # Not allowed together with a pending update: its own call.
        _call(stripe.Subscription.modify, subscription_id, cancel_at_period_end=False)
    item_id = current["items"]["data"][0]["id"]
    data = _call(
        stripe.Subscription.modify,
        subscription_id,
        items=[{"id": item_id, "price": price_id}],
        proration_behavior="always_invoice",
        payment_behavior="pending_if_incomplete",
        expand=["latest_invoice"],
    )
    invoice = data.get("latest_invoice")
    pay_at = invoice.get("hosted_invoice_url") if data.get("pending_update") and not isinstance(invoice, str) else ""
    return subscription_sync(data=data), pay_at or ""


def subscription_change_price_at_period_end(
    *, subscription_id: str, price_id: str, interval: str
) -> djstripe_models.Subscription:
    """Schedule the swap to `price_id` for the end of the paid period (a subscription schedule with the
    current phase and then the new price; released afterwards). Nothing is charged or credited now."""
    current = _call(stripe.Subscription.retrieve, subscription_id)
    schedule = current.get("schedule")
    if schedule:
        schedule = _call(
            stripe.SubscriptionSchedule.retrieve, schedule if isinstance(schedule, str) else schedule["id"]
        )
    else:
        schedule = _call(stripe.SubscriptionSchedule.create, from_subscription=subscription_id)
    phase = schedule["phases"][0]
    current_price = current["items"]["data"][0]["price"]
    _call(
        stripe.SubscriptionSchedule.modify,
        schedule["id"],
        end_behavior="release",
        proration_behavior="none",
        phases=[
            {
                "items": [{"price": current_price["id"], "quantity": 1}],
                "start_date": phase["start_date"],
                "end_date": phase["end_date"],
            },
            {"items": [{"price": price_id, "quantity": 1}], "duration": {"interval": interval, "interval_count": 1}},
        ],
    )
    return subscription_fetch(subscription_id=subscription_id)


def subscription_cancel(*, subscription_id: str, at_period_end: bool) -> djstripe_models.Subscription:
    if at_period_end:
        data = _call(stripe.Subscription.modify, subscription_id, cancel_at_period_end=True)
    else:
        # Anything still owed (pending items, usage) is invoiced now; unused time is credited.
        data = _call(stripe.Subscription.cancel, subscription_id, invoice_now=True, prorate=True)
    return subscription_sync(data=data)


def card_fingerprints(*, customer_id: str) -> set[str]:
    """The fingerprints of the customer's cards: the same card has the same fingerprint everywhere."""
    methods = _call(stripe.PaymentMethod.list, customer=customer_id, type="card", limit=100)["data"]
    return {m["card"]["fingerprint"] for m in methods if (m.get("card") or {}).get("fingerprint")}


def customer_balance_adjust(*, user, amount: int, currency: str, description: str, idempotency_key: str) -> str:
    """Change the user's customer balance: a negative `amount` is a credit Stripe takes off their next
    invoice, a positive one a debit added to it. Returns the balance transaction's id."""
    customer = customer_for(user)
    transaction = _call(
        stripe.Customer.create_balance_transaction,
        customer.id,
        amount=amount,
        currency=currency,
        description=description,
        idempotency_key=idempotency_key,
    )
    return transaction["id"]


def product_and_prices_sync(*, plan, yearly_cents: int) -> tuple[str, str, str]:
    """Create or update the plan's product and its monthly and yearly prices; idempotent.

    Prices are found by lookup key (`qm_<plan>_<interval>`). Stripe prices cannot change amount, so
    a changed amount makes a new price that takes the lookup key over, and the old one is archived.
    """
    product_id = f"qm_{plan.code}"
    product_fields = {"name": f"QuantMesh Cloud {plan.name}", "metadata": {"qm_plan": plan.code}}
    try:
        stripe.Product.retrieve(product_id, **_options())
        product = _call(stripe.Product.modify, product_id, **product_fields)
    except stripe.InvalidRequestError:
        product = _call(stripe.Product.create, id=product_id, **product_fields)
    djstripe_models.Product.sync_from_stripe_data(product, api_key=djstripe_settings.STRIPE_SECRET_KEY)
    ids = []
    for interval, amount in (("month", plan.price_monthly_cents), ("year", yearly_cents)):
        lookup_key = f"qm_{plan.code}_{interval}"
        found = _call(stripe.Price.list, lookup_keys=[lookup_key], active=True, limit=1)["data"]
        price = found[0] if found else None
        if price is None or price["unit_amount"] != amount or price["currency"] != plan.currency:
            price = _call(
                stripe.Price.create,
                product=product_id,
                unit_amount=amount,
                currency=plan.currency,
                recurring={"interval": interval},
                lookup_key=lookup_key,
                transfer_lookup_key=True,
                metadata={"qm_plan": plan.code, "qm_interval": interval},
            )
            if found:
                _call(stripe.Price.modify, found[0]["id"], active=False)
        djstripe_models.Price.sync_from_stripe_data(price, api_key=djstripe_settings.STRIPE_SECRET_KEY)
        ids.append(price["id"])
    return product_id, ids[0], ids[1]


def webhook_endpoint_ensure(*, base_url: str) -> djstripe_models.WebhookEndpoint:
    """The portal's webhook endpoint in Stripe (created once), with its signing secret stored by
    dj-stripe so deliveries can be verified."""
    existing = djstripe_models.WebhookEndpoint.objects.filter(djstripe_uuid__isnull=False).first()
    if existing is not None and existing.url.startswith(base_url):
        return existing
    endpoint_uuid = uuid4()
    url = base_url.rstrip("/") + reverse("djstripe:djstripe_webhook_by_uuid", kwargs={"uuid": endpoint_uuid})
    data = _call(
        stripe.WebhookEndpoint.create,
        url=url,
        enabled_events=WEBHOOK_EVENTS,
        api_version=djstripe_settings.STRIPE_API_VERSION,
        metadata={"djstripe_uuid": str(endpoint_uuid)},
    )
    endpoint = djstripe_models.WebhookEndpoint.sync_from_stripe_data(data, api_key=djstripe_settings.STRIPE_SECRET_KEY)
    # Stripe shows the signing secret only in the create response; keep it.
    endpoint.secret = data["secret"]
    endpoint.djstripe_uuid = endpoint_uuid
    endpoint.save(update_fields=["secret", "djstripe_uuid"])
    return endpoint
