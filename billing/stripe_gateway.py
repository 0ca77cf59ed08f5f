"""Every call billing makes to the Stripe API, in one place.

The rest of billing works on what dj-stripe has synced into its tables; only this module talks to
Stripe, always with the pinned API version, and it syncs every object Stripe returns so the local
copy is current before the caller reads it.
"""

from __future__ import annotations

import stripe
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
]


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
    )
    return session["url"]


def portal_session_create(*, user, return_url: str) -> str:
    """Stripe's customer portal (card, invoices) for the user; returns its URL."""
    customer = customer_for(user)
    session = _call(stripe.billing_portal.Session.create, customer=customer.id, return_url=return_url)
    return session["url"]


def subscription_fetch(*, subscription_id: str) -> djstripe_models.Subscription:
    """The subscription as Stripe has it now, synced locally (webhooks may arrive late or out of order)."""
    data = _call(stripe.Subscription.retrieve, subscription_id)
    return djstripe_models.Subscription.sync_from_stripe_data(data, api_key=djstripe_settings.STRIPE_SECRET_KEY)


def subscription_change_price(*, subscription_id: str, price_id: str) -> djstripe_models.Subscription:
    """Swap the subscription's one item to `price_id`, prorated."""
    current = _call(stripe.Subscription.retrieve, subscription_id)
    item_id = current["items"]["data"][0]["id"]
    data = _call(
        stripe.Subscription.modify,
        subscription_id,
        items=[{"id": item_id, "price": price_id}],
        proration_behavior="create_prorations",
        cancel_at_period_end=False,
    )
    return djstripe_models.Subscription.sync_from_stripe_data(data, api_key=djstripe_settings.STRIPE_SECRET_KEY)


def subscription_cancel(*, subscription_id: str, at_period_end: bool) -> djstripe_models.Subscription:
    if at_period_end:
        data = _call(stripe.Subscription.modify, subscription_id, cancel_at_period_end=True)
    else:
        data = _call(stripe.Subscription.cancel, subscription_id)
    return djstripe_models.Subscription.sync_from_stripe_data(data, api_key=djstripe_settings.STRIPE_SECRET_KEY)


def customer_credit(*, user, amount_cents: int, currency: str, description: str, idempotency_key: str) -> str:
    """Credit the user's customer balance; Stripe takes it off their next invoice. Returns the
    balance transaction's id."""
    customer = customer_for(user)
    transaction = _call(
        stripe.Customer.create_balance_transaction,
        customer.id,
        amount=-amount_cents,
        currency=currency,
        description=description,
        idempotency_key=idempotency_key,
    )
    return transaction["id"]


def product_and_prices_sync(*, plan, yearly_cents: int) -> tuple[str, str]:
    """Create or update the plan's product and its monthly and yearly prices; idempotent.

    Prices are found by lookup key (`qm_<plan>_<interval>`). Stripe prices cannot change amount, so
    a changed amount makes a new price that takes the lookup key over, and the old one is archived.
    """
    product_id = f"qm_{plan.code}"
    product_fields = {"name": f"QuantMesh Cloud {plan.name}", "metadata": {"qm_plan": plan.code}}
    try:
        stripe.Product.retrieve(product_id, **_options())
        _call(stripe.Product.modify, product_id, **product_fields)
    except stripe.InvalidRequestError:
        _call(stripe.Product.create, id=product_id, **product_fields)
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
    return ids[0], ids[1]


def webhook_endpoint_ensure(*, base_url: str) -> djstripe_models.WebhookEndpoint:
    """The portal's webhook endpoint in Stripe (created once), with its signing secret stored by
    dj-stripe so deliveries can be verified."""
    from uuid import uuid4

    from django.urls import reverse

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
