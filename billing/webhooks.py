"""Stripe's webhooks, after dj-stripe has verified the signature, recorded the event once (a repeat
delivery of the same event id is not processed again) and synced the object fresh from Stripe.

Each handler reads the synced copy, never the event's payload, so events arriving late or out of
order cannot move a subscription back to an older state.
"""

from __future__ import annotations

import json
import logging

import stripe
from django.http import HttpResponse
from djstripe import models as djstripe_models
from djstripe.event_handlers import djstripe_receiver
from djstripe.views import ProcessWebhookView

from . import services

logger = logging.getLogger(__name__)


class WebhookView(ProcessWebhookView):
    """dj-stripe's webhook endpoint, except that an event about a customer Stripe does not know
    (deleted, or another account's) is answered 200 instead of failing on every retry: dj-stripe has
    already recorded the delivery (its WebhookEventTrigger row, with the error)."""

    def post(self, request, uuid):
        try:
            return super().post(request, uuid)
        except stripe.InvalidRequestError as error:
            customer_id = _event_customer(request.body)
            if error.http_status != 404 or not customer_id or djstripe_models.Customer.objects.filter(id=customer_id):
                raise
            logger.warning("Stripe event for unknown customer %s ignored (recorded by dj-stripe)", customer_id)
            return HttpResponse(f"ignored: unknown customer {customer_id}")


def _event_customer(body: bytes) -> str:
    try:
        obj = json.loads(body)["data"]["object"]
    except (ValueError, KeyError, TypeError):
        return ""
    customer = obj.get("customer") or (obj.get("id") if obj.get("object") == "customer" else "")
    return customer if isinstance(customer, str) else ""


def _user_of(customer_id) -> object | None:
    customer = djstripe_models.Customer.objects.filter(id=customer_id).first() if customer_id else None
    return getattr(customer, "subscriber", None)


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
    services.invoice_settled(
        subscription_id=_invoice_subscription_id(data),
        customer_user=_user_of(data.get("customer")),
        paid=data.get("status") == "paid",
        amount_paid=int(data.get("amount_paid") or 0),
        currency=data.get("currency", "usd"),
        invoice_id=data.get("id", ""),
    )


@djstripe_receiver("invoice.payment_action_required")
def invoice_action_required(sender, event, **kwargs) -> None:
    data = event.data["object"]
    user = _user_of(data.get("customer"))
    if user is not None and data.get("hosted_invoice_url"):
        services.invoice_payment_action_required(
            user=user, invoice_id=data.get("id", ""), hosted_invoice_url=data["hosted_invoice_url"]
        )


@djstripe_receiver(["charge.refunded", "charge.dispute.created"])
def payment_taken_back(sender, event, **kwargs) -> None:
    """A refund or a dispute: a referral credit the payment earned is taken back."""
    data = event.data["object"]
    charge_id = data.get("charge") if data.get("object") == "dispute" else data.get("id")
    customer_id = data.get("customer")
    if not customer_id and charge_id:
        charge = djstripe_models.Charge.objects.filter(id=charge_id).first()
        customer_id = charge.customer_id if charge is not None else None
    user = _user_of(customer_id)
    if user is not None:
        reason = "disputed" if data.get("object") == "dispute" else "refunded"
        services.referral_claw_back(referred=user, reason=reason, charge_id=charge_id or "")
