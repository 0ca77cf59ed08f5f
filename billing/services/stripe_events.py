"""What billing does on Stripe's events (billing/webhooks.py calls these once dj-stripe has recorded
and synced the event)."""

from __future__ import annotations

from .. import stripe_gateway
from ..models import BillingEvent, Subscription
from .referrals import referral_credit
from .shared import billing_event_record, customer_notify
from .stripe_sync import subscription_sync_from_stripe


def checkout_completed(*, subscription_id: str) -> Subscription | None:
    """Checkout finished: fetch the subscription it created (its own webhook may come later)."""
    remote = stripe_gateway.subscription_fetch(subscription_id=subscription_id)
    return subscription_sync_from_stripe(stripe_subscription=remote)


def invoice_settled(
    *, subscription_id: str, customer_user, paid: bool, amount_paid: int, currency: str, invoice_id: str
) -> None:
    """An invoice was paid or its payment failed: the subscription's state follows from Stripe's,
    and a first paid invoice credits whoever referred the user.

    Every Stripe call comes before any row lock: this runs inside dj-stripe's webhook transaction,
    where a lock taken stays held until the event is committed. So the subscription is fetched, the
    referral credited at Stripe (then its row written), and only then the subscription row synced."""
    remote = stripe_gateway.subscription_fetch(subscription_id=subscription_id) if subscription_id else None
    if paid and customer_user is not None and amount_paid > 0:
        referral_credit(referred=customer_user, amount_paid=amount_paid, currency=currency, invoice_id=invoice_id)
    if remote is not None:
        subscription_sync_from_stripe(stripe_subscription=remote)


def invoice_payment_action_required(*, user, invoice_id: str, hosted_invoice_url: str) -> None:
    """A payment needs the customer (3-D Secure on a renewal, say): send them to Stripe's page to pay."""
    billing_event_record(
        user=user,
        kind=BillingEvent.Kind.PAYMENT_ACTION_REQUIRED,
        source="stripe",
        invoice=invoice_id,
        url=hosted_invoice_url,
    )
    customer_notify(
        user=user,
        subject="Confirm your QuantMesh Cloud payment",
        message="Your bank asks you to confirm a payment. Until you do, the invoice stays unpaid and your "
        f"instances will be stopped when the grace period ends (their data is kept). Pay here: {hosted_invoice_url}",
    )
