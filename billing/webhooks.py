"""Stripe's webhooks, after dj-stripe has verified the signature, recorded the event once (a repeat
delivery of the same event id is not processed again) and synced the object fresh from Stripe.

Each handler reads the synced copy, never the event's payload, so events arriving late or out of
order cannot move a subscription back to an older state.
"""

from __future__ import annotations

from djstripe import models as djstripe_models
from djstripe.event_handlers import djstripe_receiver

from . import services


def _object_id(event) -> str:
    return event.data.get("object", {}).get("id", "")


@djstripe_receiver(["customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"])
def subscription_event(sender, event, **kwargs) -> None:
    subscription = djstripe_models.Subscription.objects.filter(id=_object_id(event)).select_related("customer").first()
    if subscription is not None:
        services.subscription_sync_from_stripe(stripe_subscription=subscription)


@djstripe_receiver("checkout.session.completed")
def checkout_completed(sender, event, **kwargs) -> None:
    session = event.data.get("object", {})
    if session.get("mode") == "subscription" and session.get("subscription"):
        subscription = session["subscription"]
        services.checkout_completed(
            subscription_id=subscription if isinstance(subscription, str) else subscription["id"]
        )


def _invoice_subscription_id(data: dict) -> str:
    # API 2025-03-31 and later: the subscription is under parent.subscription_details.
    details = (data.get("parent") or {}).get("subscription_details") or {}
    subscription = details.get("subscription") or data.get("subscription") or ""
    return subscription if isinstance(subscription, str) else subscription.get("id", "")


@djstripe_receiver(["invoice.paid", "invoice.payment_failed"])
def invoice_settled(sender, event, **kwargs) -> None:
    invoice = djstripe_models.Invoice.objects.filter(id=_object_id(event)).first()
    data = invoice.stripe_data if invoice is not None else event.data["object"]
    customer = djstripe_models.Customer.objects.filter(id=data.get("customer")).first()
    services.invoice_settled(
        subscription_id=_invoice_subscription_id(data),
        customer_user=getattr(customer, "subscriber", None),
        paid=data.get("status") == "paid",
        amount_paid=int(data.get("amount_paid") or 0),
        currency=data.get("currency", "usd"),
        invoice_id=data.get("id", ""),
    )
