"""The local subscription follows Stripe's: one sync path for webhooks, user actions and the daily
reconcile."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from djstripe.models import Product

from .. import stripe_gateway
from ..models import BillingEvent, Plan, Subscription
from ..selectors import ENTITLED_STATUSES
from ..signals import payment_failed
from .shared import billing_event_record, entitlements_enforce, operator_alert

logger = logging.getLogger(__name__)

# Stripe's subscription statuses, as the product understands them. `incomplete` (first payment not
# made yet) grants nothing: Checkout only completes once the card is charged.
STRIPE_STATUS = {
    "trialing": Subscription.Status.TRIALING,
    "active": Subscription.Status.ACTIVE,
    "past_due": Subscription.Status.PAST_DUE,
    "unpaid": Subscription.Status.PAST_DUE,
    "canceled": Subscription.Status.CANCELED,
    "incomplete_expired": Subscription.Status.CANCELED,
    "paused": Subscription.Status.CANCELED,
}


def _stripe_item(data: dict) -> dict:
    items = (data.get("items") or {}).get("data") or []
    return items[0] if items else {}


# What a Stripe subscription event writes on the user's existing subscription row.
SYNCED_FIELDS = [
    "plan",
    "interval",
    "provider",
    "stripe_subscription_id",
    "current_period_end",
    "cancel_at_period_end",
    "past_due_since",
    "status",
    "pending_plan",
    "pending_interval",
    "pending_effective",
    "pending_invoice_url",
    "updated_at",
]


def plan_for_price(price: dict) -> tuple[Plan | None, str]:
    """The plan a Stripe price sells and its interval, found through the price's product (its id as
    `billing_stripe_sync` made it, or the product's `qm_plan` metadata), whatever the price's amount
    or age. (None, interval) when no plan is sold through that product: it grants nothing."""
    product = price.get("product") or ""
    product_id = product if isinstance(product, str) else product.get("id", "")
    interval = (price.get("recurring") or {}).get("interval", "")
    if not product_id or interval not in Subscription.Interval.values:
        return None, interval
    plan = Plan.objects.filter(stripe_product_id=product_id).first()
    if plan is None:
        synced = Product.objects.filter(id=product_id).first()
        code = (synced.metadata or {}).get("qm_plan") if synced is not None else None
        plan = Plan.objects.filter(code=code).first() if code else None
    return plan, interval


def _unknown_price(*, user, stripe_id: str, price: dict) -> Subscription | None:
    """Fail closed: a subscription on a price no plan sells grants nothing; staff are told."""
    operator_alert(
        subject="subscription on an unknown price",
        message=f"Stripe subscription {stripe_id} of {user.email} is on price {price.get('id')} "
        f"(product {price.get('product')}), which no plan sells: it grants nothing until fixed.",
    )
    with transaction.atomic():
        row = Subscription.objects.select_for_update().filter(user=user).first()
        if row is None or row.stripe_subscription_id != stripe_id or row.status not in ENTITLED_STATUSES:
            return row
        row.status = Subscription.Status.CANCELED
        row.save(update_fields=["status", "updated_at"])
        billing_event_record(
            user=user,
            kind=BillingEvent.Kind.UNKNOWN_PRICE,
            source="stripe",
            subscription=stripe_id,
            price=price.get("id"),
        )
        entitlements_enforce(user=user, reason="subscription on a price no plan sells")
    return row


def _pending_settled(row: Subscription, data: dict, plan: Plan, interval: str, entitled: bool) -> bool:
    """Whether the pending change is over: in force now, or dropped at Stripe (unpaid update expired,
    schedule released), or the plan ended."""
    if (row.pending_plan_id, row.pending_interval) == (plan.pk, interval) or not entitled:
        return True
    if row.pending_effective == "when_paid":
        return not data.get("pending_update")
    return not data.get("schedule")


def subscription_sync_from_stripe(*, stripe_subscription, source: str = "stripe") -> Subscription | None:
    """Bring the user's subscription in line with Stripe's (dj-stripe's synced copy, which is always
    fetched fresh from Stripe, so a late or repeated event cannot move it backwards). Idempotent:
    nothing happens when nothing changed. Returns the user's subscription, or None when the Stripe
    subscription belongs to nobody here."""
    data = stripe_subscription.stripe_data
    customer = stripe_subscription.customer
    user = getattr(customer, "subscriber", None)
    if user is None:
        logger.warning("Stripe subscription %s has no QuantMesh user; ignored", stripe_subscription.id)
        return None
    item = _stripe_item(data)
    price = item.get("price") or {}
    status = STRIPE_STATUS.get(data.get("status"))
    if status is None:
        logger.info("Stripe subscription %s is %s: grants nothing yet", stripe_subscription.id, data.get("status"))
        return Subscription.objects.filter(user=user).first()
    plan, interval = plan_for_price(price)
    if plan is None:
        return _unknown_price(user=user, stripe_id=stripe_subscription.id, price=price)
    period_end_ts = item.get("current_period_end") or data.get("current_period_end")
    period_end = datetime.fromtimestamp(period_end_ts, tz=UTC) if period_end_ts else None
    with transaction.atomic():
        row = Subscription.objects.select_for_update().select_related("plan").filter(user=user).first()
        if (
            row is not None
            and row.stripe_subscription_id
            and row.stripe_subscription_id != stripe_subscription.id
            and row.status in ENTITLED_STATUSES
        ):
            if status != Subscription.Status.CANCELED:
                # Two paid subscriptions for one customer: the first stands; staff refund the other.
                operator_alert(
                    subject="second live subscription",
                    message=f"{user.email} has Stripe subscriptions {row.stripe_subscription_id} and "
                    f"{stripe_subscription.id} both live; the first grants the plan, cancel and refund the other.",
                )
            # Else a late event about an older, ended subscription: the current one stands.
            return row
        before = (row.plan_id, row.interval, row.status) if row is not None else (None, None, None)
        if row is None:
            row = Subscription(user=user, created_at=timezone.now())
        was_entitled = row.pk is not None and row.status in ENTITLED_STATUSES
        previous_plan = row.plan.code if row.pk else None
        row.plan = plan
        row.interval = interval
        row.provider = Subscription.Provider.STRIPE
        row.stripe_subscription_id = stripe_subscription.id
        row.current_period_end = period_end
        row.cancel_at_period_end = bool(data.get("cancel_at_period_end"))
        recovered = row.status == Subscription.Status.PAST_DUE and status == Subscription.Status.ACTIVE
        newly_past_due = status == Subscription.Status.PAST_DUE and row.past_due_since is None
        if newly_past_due:
            row.past_due_since = timezone.now()
        elif status != Subscription.Status.PAST_DUE:
            row.past_due_since = None
        row.status = status
        entitled = status in ENTITLED_STATUSES
        if row.pending_plan_id and _pending_settled(row, data, plan, interval, entitled):
            row.pending_plan, row.pending_interval, row.pending_effective, row.pending_invoice_url = None, "", "", ""
        row.save(update_fields=None if row.pk is None else SYNCED_FIELDS)
        if not was_entitled and entitled:
            billing_event_record(user=user, kind=BillingEvent.Kind.SUBSCRIBED, source=source, plan=plan.code)
        elif was_entitled and entitled and before[0] != plan.pk:
            billing_event_record(
                user=user, kind=BillingEvent.Kind.PLAN_CHANGED, source=source, plan=plan.code, previous=previous_plan
            )
        if newly_past_due:
            billing_event_record(user=user, kind=BillingEvent.Kind.PAYMENT_FAILED, source=source)
            transaction.on_commit(lambda: payment_failed.send(sender=Subscription, user=user))
        if recovered:
            billing_event_record(user=user, kind=BillingEvent.Kind.PAYMENT_RECOVERED, source=source)
        if was_entitled and not entitled:
            billing_event_record(user=user, kind=BillingEvent.Kind.CANCELED, source=source)
        if before != (row.plan_id, row.interval, row.status):
            entitlements_enforce(
                user=user, reason="plan canceled" if not entitled else "plan changed", plan_changed=before[0] != plan.pk
            )
    return row


def _end_entitlement(*, row: Subscription, source: str, **detail) -> bool:
    """End an entitled subscription locally (re-checked under its lock); its instances follow."""
    with transaction.atomic():
        row = Subscription.objects.select_for_update().get(pk=row.pk)
        if row.status not in ENTITLED_STATUSES:
            return False
        row.status = Subscription.Status.CANCELED
        row.save(update_fields=["status", "updated_at"])
        billing_event_record(user=row.user, kind=BillingEvent.Kind.RECONCILED, source=source, **detail)
        billing_event_record(user=row.user, kind=BillingEvent.Kind.CANCELED, source=source)
        entitlements_enforce(user=row.user, reason=detail.get("reason", "plan ended"))
    return True


def subscriptions_reconcile() -> dict[str, int]:
    """Daily: every entitled Stripe subscription is read from Stripe again (dj-stripe syncs it) and the
    local copy follows; one Stripe no longer has ends. Whatever Stripe says (or if it cannot be
    reached), an entitlement whose paid period ended more than QM_BILLING_RECONCILE_MARGIN ago ends:
    a lost webhook never grants service for free."""
    counts = {"checked": 0, "ended": 0, "unreachable": 0}
    for row in Subscription.objects.select_related("user").filter(
        provider=Subscription.Provider.STRIPE, status__in=ENTITLED_STATUSES
    ):
        counts["checked"] += 1
        try:
            remote = stripe_gateway.subscription_retrieve(subscription_id=row.stripe_subscription_id)
        except stripe_gateway.StripeUnavailable:
            counts["unreachable"] += 1
            continue
        if remote is None:
            counts["ended"] += _end_entitlement(
                row=row,
                source="system",
                reason="Stripe has no such subscription",
                subscription=row.stripe_subscription_id,
            )
        else:
            subscription_sync_from_stripe(stripe_subscription=remote, source="system")
    deadline = timezone.now() - settings.QM_BILLING_RECONCILE_MARGIN
    for row in Subscription.objects.select_related("user").filter(
        provider=Subscription.Provider.STRIPE, status__in=ENTITLED_STATUSES, current_period_end__lt=deadline
    ):
        counts["ended"] += _end_entitlement(
            row=row,
            source="system",
            reason="paid period long over",
            period_end=row.current_period_end.isoformat(),
        )
    return counts
