"""State changes of billing."""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import mail_admins
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from quantmesh.errors import ServiceError

from . import stripe_gateway
from .catalogue import PLAN_CATALOGUE, yearly_price_cents
from .models import BillingEvent, Plan, Referral, ReferralCode, Subscription
from .selectors import ENTITLED_STATUSES, TRIAL_DAYS, entitlements_for, grace_ends_at, open_invoice_url
from .signals import customer_notice, entitlements_changed, payment_failed, plan_change_check

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


def plan_catalogue_sync(*, plan_model=Plan) -> list[str]:
    """Create or update the Plan rows from the catalogue; idempotent. Returns the codes it changed.

    `plan_model` lets the data migration pass its historical model.
    """
    changed = []
    for entry in PLAN_CATALOGUE:
        values = {k: v for k, v in entry.items() if k != "code"}
        values["price_yearly_cents"] = yearly_price_cents(entry["price_monthly_cents"])
        plan, created = plan_model.objects.get_or_create(code=entry["code"], defaults=values)
        if created:
            changed.append(plan.code)
            continue
        dirty = [
            field
            for field, value in values.items()
            if getattr(plan, field) != plan._meta.get_field(field).to_python(value)
        ]
        if dirty:
            for field in dirty:
                setattr(plan, field, values[field])
            plan.save(update_fields=dirty)
            changed.append(plan.code)
    return changed


def plans_stripe_sync() -> dict[str, tuple[str, str]]:
    """Create or update each plan's Stripe product and prices and remember the price ids; idempotent."""
    result = {}
    for plan in Plan.objects.filter(is_active=True):
        product, month, year = stripe_gateway.product_and_prices_sync(plan=plan, yearly_cents=plan.price_yearly_cents)
        if (plan.stripe_product_id, plan.stripe_price_month_id, plan.stripe_price_year_id) != (product, month, year):
            plan.stripe_product_id, plan.stripe_price_month_id, plan.stripe_price_year_id = product, month, year
            plan.save(update_fields=["stripe_product_id", "stripe_price_month_id", "stripe_price_year_id"])
        result[plan.code] = (month, year)
    return result


def stripe_webhook_endpoint_ensure(*, base_url: str):
    """The endpoint Stripe posts this portal's webhooks to, created once."""
    return stripe_gateway.webhook_endpoint_ensure(base_url=base_url)


def billing_event_record(*, user, kind: str, source: str, **detail) -> BillingEvent:
    return BillingEvent.objects.create(user=user, kind=kind, source=source, detail=detail)


def entitlements_enforce(*, user, reason: str, plan_changed: bool = False) -> None:
    """What the user may run changed: once it is committed, their instances and domains are brought
    within it (the instances app's one enforcement path listens)."""
    transaction.on_commit(
        lambda: entitlements_changed.send(sender=Subscription, user=user, reason=reason, plan_changed=plan_changed)
    )


def operator_alert(*, subject: str, message: str) -> None:
    """Something only staff can fix (ADMINS by e-mail, and the error log)."""
    logger.error("%s: %s", subject, message)
    mail_admins(f"Billing: {subject}", message, fail_silently=True)


def _stripe() -> bool:
    return settings.QM_BILLING_PROVIDER == "stripe"


def _gateway_error(error: stripe_gateway.StripeUnavailable) -> ServiceError:
    return ServiceError(
        code="payment_provider_unavailable",
        message=f"Stripe could not complete the request ({error}); nothing was changed, try again shortly.",
        status=503,
    )


def _period_end(interval: str):
    return timezone.now() + timedelta(days=365 if interval == Subscription.Interval.YEAR else 30)


def subscription_grant_local(*, user, plan: Plan, interval: str = Subscription.Interval.MONTH) -> Subscription:
    """A subscription without payment, for the embedded default and the demo user (the `local` provider)."""
    with transaction.atomic():
        subscription, _ = Subscription.objects.update_or_create(
            user=user,
            defaults={
                "plan": plan,
                "interval": interval,
                "status": Subscription.Status.ACTIVE,
                "provider": Subscription.Provider.LOCAL,
                "current_period_end": _period_end(interval),
                "cancel_at_period_end": False,
                "past_due_since": None,
            },
        )
        billing_event_record(
            user=user, kind=BillingEvent.Kind.SUBSCRIBED, source="user", plan=plan.code, interval=interval
        )
        entitlements_enforce(user=user, reason="subscribed", plan_changed=True)
    return subscription


def _plan_or_400(code: str, *, field: str) -> Plan:
    plan = Plan.objects.filter(code=code, is_active=True).first()
    if plan is None:
        raise ServiceError(
            code="unknown_plan",
            message=f'{field}: "{code}" is not a plan; choose personal, professional or enterprise.',
            details={field: [f'"{code}" is not a valid choice.']},
        )
    return plan


def _interval_or_400(interval: str) -> str:
    if interval not in Subscription.Interval.values:
        raise ServiceError(
            code="invalid_request",
            message=f'interval: "{interval}" is not a billing interval; choose month or year.',
            details={"interval": [f'"{interval}" is not a valid choice.']},
        )
    return interval


def _stripe_price(plan: Plan, interval: str) -> str:
    price_id = plan.stripe_price_year_id if interval == Subscription.Interval.YEAR else plan.stripe_price_month_id
    if not price_id:
        raise ServiceError(
            code="plan_not_for_sale",
            message=f"The {plan.name} plan has no Stripe price yet; staff must run `manage.py billing_stripe_sync`.",
            status=503,
        )
    return price_id


def subscription_create(*, user, plan_code: str, interval: str) -> str | None:
    """Subscribe the user. With Stripe this starts Checkout and returns its URL (the subscription
    exists once Stripe's webhook says it was paid); with the local provider the plan is granted
    at once and None is returned.

    Stripe is asked first whether the customer already has a live subscription (a webhook may be
    late or lost): then 409, and the local copy catches up. Older open Checkout sessions are expired,
    so two tabs cannot pay for two subscriptions."""
    plan = _plan_or_400(plan_code, field="plan")
    interval = _interval_or_400(interval)
    _refuse_if_subscribed(user)
    if not _stripe():
        subscription_grant_local(user=user, plan=plan, interval=interval)
        return None
    price_id = _stripe_price(plan, interval)
    billing_url = settings.QM_PUBLIC_URL + reverse("billing")
    try:
        live = stripe_gateway.live_subscriptions(user=user)
        if not live:
            stripe_gateway.open_checkout_sessions_expire(user=user)
            url = stripe_gateway.checkout_session_create(
                user=user,
                price_id=price_id,
                plan_code=plan.code,
                interval=interval,
                success_url=billing_url + "?checkout=success",
                cancel_url=billing_url + "?checkout=canceled",
            )
        else:
            for remote in live:
                subscription_sync_from_stripe(stripe_subscription=stripe_gateway.subscription_sync(data=remote))
    except stripe_gateway.StripeUnavailable as error:
        raise _gateway_error(error) from error
    if live:
        _refuse_if_subscribed(user, stripe_ids=[remote["id"] for remote in live])
    billing_event_record(
        user=user, kind=BillingEvent.Kind.CHECKOUT_STARTED, source="user", plan=plan.code, interval=interval
    )
    return url


def _refuse_if_subscribed(user, *, stripe_ids: list[str] | tuple = ()) -> None:
    existing = Subscription.objects.select_related("plan").filter(user=user, status__in=ENTITLED_STATUSES).first()
    if existing is None and not stripe_ids:
        return
    what = f"the {existing.plan.name} plan" if existing is not None else "a live subscription at Stripe"
    raise ServiceError(
        code="already_subscribed",
        message=f"You already have {what}: use update-plan to change it.",
        status=409,
        details={"stripe_subscriptions": list(stripe_ids)} if stripe_ids else None,
    )


def _entitled_or_409(user, *, message: str) -> Subscription:
    subscription = Subscription.objects.select_related("plan").filter(user=user, status__in=ENTITLED_STATUSES).first()
    if subscription is None:
        raise ServiceError(code="no_subscription", message=message, status=409)
    return subscription


def _takes_effect_now(current: Subscription, plan: Plan, interval: str) -> bool:
    """Upgrades (a higher tier, or monthly → yearly on the same plan) are charged and start now;
    downgrades (and yearly → monthly) wait for the end of the period already paid."""
    if plan.tier != current.plan.tier:
        return plan.tier > current.plan.tier
    return interval == Subscription.Interval.YEAR


def subscription_change_plan(*, user, new_plan_code: str, interval: str | None = None) -> Subscription:
    """Change plan and/or billing interval.

    With Stripe, an upgrade is invoiced at once and starts when that invoice is paid (until then the
    subscription shows it as pending, with the invoice to pay); a downgrade is scheduled for the end
    of the paid period. A downgrade the user's instances do not fit is refused with 409 and the list
    of what is over. Stripe is called outside any transaction; the result is written afterwards
    under the row lock."""
    plan = _plan_or_400(new_plan_code, field="new_plan")
    subscription = _entitled_or_409(user, message="You have no plan to change: subscribe first.")
    interval = _interval_or_400(interval or subscription.interval)
    if (subscription.plan_id, subscription.interval) == (plan.pk, interval):
        return subscription
    now = _takes_effect_now(subscription, plan, interval)
    if not now:
        problems = [p for _, found in plan_change_check.send(sender=Subscription, user=user, plan=plan) for p in found]
        if problems:
            raise ServiceError(
                code="plan_does_not_fit",
                message=f"Your instances do not fit the {plan.name} plan: delete or stop using what is listed.",
                status=409,
                details={"over": problems},
            )
    if subscription.provider != Subscription.Provider.STRIPE:
        _require_local_provider()
        return _local_change_plan(user=user, plan=plan, interval=interval)
    price_id = _stripe_price(plan, interval)
    try:
        if now:
            remote, pay_at = stripe_gateway.subscription_change_price_now(
                subscription_id=subscription.stripe_subscription_id, price_id=price_id
            )
        else:
            remote, pay_at = (
                stripe_gateway.subscription_change_price_at_period_end(
                    subscription_id=subscription.stripe_subscription_id, price_id=price_id, interval=interval
                ),
                "",
            )
    except stripe_gateway.StripeUnavailable as error:
        raise _gateway_error(error) from error
    row = subscription_sync_from_stripe(stripe_subscription=remote, source="user")
    with transaction.atomic():
        row = Subscription.objects.select_for_update().select_related("plan").get(pk=row.pk)
        if row.stripe_subscription_id != subscription.stripe_subscription_id:
            return row  # replaced meanwhile (another subscription synced): nothing of ours to mark
        if (row.plan_id, row.interval) != (plan.pk, interval):
            row.pending_plan, row.pending_interval = plan, interval
            row.pending_effective = "when_paid" if now else "period_end"
            row.pending_invoice_url = pay_at
            row.save(update_fields=["pending_plan", "pending_interval", "pending_effective", "pending_invoice_url"])
            billing_event_record(
                user=user,
                kind=BillingEvent.Kind.CHANGE_SCHEDULED,
                source="user",
                plan=plan.code,
                interval=interval,
                effective=row.pending_effective,
                invoice_url=pay_at,
            )
    if pay_at:
        _notify(
            user=user,
            subject="Pay to start your new QuantMesh Cloud plan",
            message=f"Your change to the {plan.name} plan starts once its invoice is paid: {pay_at}",
        )
    return row


def _local_change_plan(*, user, plan: Plan, interval: str) -> Subscription:
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().select_related("plan").get(user=user)
        previous = subscription.plan.code
        subscription.plan, subscription.interval = plan, interval
        subscription.cancel_at_period_end = False
        subscription.save(update_fields=["plan", "interval", "cancel_at_period_end", "updated_at"])
        billing_event_record(
            user=user, kind=BillingEvent.Kind.PLAN_CHANGED, source="user", plan=plan.code, previous=previous
        )
        entitlements_enforce(user=user, reason="plan changed", plan_changed=True)
    return subscription


def _require_local_provider() -> None:
    # A local grant while Stripe is configured would be a plan nobody pays for.
    if _stripe():
        raise ServiceError(
            code="payment_required",
            message="This plan was granted without payment; subscribe through Stripe Checkout on the billing page.",
            status=402,
        )


def subscription_cancel(*, user, immediately: bool) -> Subscription:
    """Immediately: the plan ends now, what is owed is invoiced now, and the instances stop gracefully
    (data kept); with Stripe every live subscription of the customer ends (two paid Checkouts cannot
    leave one running). Otherwise the instances run until the paid period ends, then stop."""
    subscription = _entitled_or_409(user, message="You have no active plan to cancel.")
    if subscription.provider == Subscription.Provider.STRIPE:
        try:
            ids = {subscription.stripe_subscription_id}
            if immediately:
                ids |= {remote["id"] for remote in stripe_gateway.live_subscriptions(user=user)}
            for subscription_id in sorted(ids):
                remote = stripe_gateway.subscription_cancel(
                    subscription_id=subscription_id, at_period_end=not immediately
                )
                row = subscription_sync_from_stripe(stripe_subscription=remote, source="user")
        except stripe_gateway.StripeUnavailable as error:
            raise _gateway_error(error) from error
        return Subscription.objects.get(pk=row.pk)
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().get(pk=subscription.pk)
        if immediately:
            subscription.status = Subscription.Status.CANCELED
            subscription.current_period_end = timezone.now()
            subscription.save(update_fields=["status", "current_period_end", "updated_at"])
            billing_event_record(user=user, kind=BillingEvent.Kind.CANCELED, source="user", immediately=True)
            entitlements_enforce(user=user, reason="plan canceled")
        else:
            subscription.cancel_at_period_end = True
            subscription.save(update_fields=["cancel_at_period_end", "updated_at"])
            billing_event_record(
                user=user,
                kind=BillingEvent.Kind.CANCEL_SCHEDULED,
                source="user",
                period_end=subscription.current_period_end.isoformat() if subscription.current_period_end else None,
            )
    return subscription


def _stripe_item(data: dict) -> dict:
    items = (data.get("items") or {}).get("data") or []
    return items[0] if items else {}


def plan_for_price(price: dict) -> tuple[Plan | None, str]:
    """The plan a Stripe price sells and its interval, found through the price's product (its id as
    `billing_stripe_sync` made it, or the product's `qm_plan` metadata), whatever the price's amount
    or age. (None, interval) when no plan is sold through that product: it grants nothing."""
    from djstripe.models import Product

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
        row.save()
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


def checkout_completed(*, subscription_id: str) -> Subscription | None:
    """Checkout finished: fetch the subscription it created (its own webhook may come later)."""
    remote = stripe_gateway.subscription_fetch(subscription_id=subscription_id)
    return subscription_sync_from_stripe(stripe_subscription=remote)


def invoice_settled(
    *, subscription_id: str, customer_user, paid: bool, amount_paid: int, currency: str, invoice_id: str
) -> None:
    """An invoice was paid or its payment failed: the subscription's state follows from Stripe's,
    and a first paid invoice credits whoever referred the user."""
    if subscription_id:
        remote = stripe_gateway.subscription_fetch(subscription_id=subscription_id)
        subscription_sync_from_stripe(stripe_subscription=remote)
    if paid and customer_user is not None and amount_paid > 0:
        referral_credit(referred=customer_user, amount_paid=amount_paid, currency=currency, invoice_id=invoice_id)


def invoice_payment_action_required(*, user, invoice_id: str, hosted_invoice_url: str) -> None:
    """A payment needs the customer (3-D Secure on a renewal, say): send them to Stripe's page to pay."""
    billing_event_record(
        user=user,
        kind=BillingEvent.Kind.PAYMENT_ACTION_REQUIRED,
        source="stripe",
        invoice=invoice_id,
        url=hosted_invoice_url,
    )
    _notify(
        user=user,
        subject="Confirm your QuantMesh Cloud payment",
        message="Your bank asks you to confirm a payment. Until you do, the invoice stays unpaid and your "
        f"instances will be stopped when the grace period ends (their data is kept). Pay here: {hosted_invoice_url}",
    )


def _notify(*, user, subject: str, message: str) -> None:
    transaction.on_commit(
        lambda: customer_notice.send(sender=Subscription, user=user, subject=subject, message=message)
    )


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


def subscriptions_expire() -> int:
    """Periodic: end subscriptions whose canceled period is over, unpaid ones past their grace, and
    trials that ran out; their owners' instances stop. Returns how many users lost their entitlement."""
    now = timezone.now()
    ended = 0
    for subscription in Subscription.objects.select_related("user").filter(
        provider=Subscription.Provider.LOCAL,
        status__in=ENTITLED_STATUSES,
        cancel_at_period_end=True,
        current_period_end__lte=now,
    ):
        # Stripe ends its own subscriptions and tells us by webhook (reconciled daily); local ones end here.
        with transaction.atomic():
            subscription.status = Subscription.Status.CANCELED
            subscription.save(update_fields=["status", "updated_at"])
            billing_event_record(user=subscription.user, kind=BillingEvent.Kind.CANCELED, source="system")
            entitlements_enforce(user=subscription.user, reason="plan ended")
        ended += 1
    users = get_user_model().objects
    unpaid = users.filter(
        subscription__status=Subscription.Status.PAST_DUE,
        subscription__past_due_since__lte=now - settings.QM_PAYMENT_GRACE,
        instances__status="running",
    ).distinct()
    for user in unpaid:
        with transaction.atomic():
            billing_event_record(user=user, kind=BillingEvent.Kind.SUSPENDED, source="system", reason="payment overdue")
            entitlements_enforce(user=user, reason="payment overdue")
        ended += 1
    # Trials: users past their trial, without a subscription, who still have instances running.
    trial_over = users.filter(
        subscription__isnull=True, date_joined__lte=now - timedelta(days=TRIAL_DAYS), instances__status="running"
    ).distinct()
    for user in trial_over:
        if entitlements_for(user).plan is None:
            entitlements_enforce(user=user, reason="trial ended")
            ended += 1
    return ended


def dunning_remind() -> int:
    """Periodic: remind unpaid customers before their instances stop, at each of
    QM_DUNNING_REMINDER_HOURS before the grace period ends (only the latest one due, once each),
    with the invoice to pay. Returns how many reminders went out."""
    now = timezone.now()
    sent = 0
    for row in Subscription.objects.select_related("user").filter(
        status=Subscription.Status.PAST_DUE, past_due_since__isnull=False
    ):
        stop_at = grace_ends_at(row)
        due = [h for h in settings.QM_DUNNING_REMINDER_HOURS if stop_at - timedelta(hours=h) <= now < stop_at]
        if not due:
            continue
        stage = min(due)
        with transaction.atomic():
            Subscription.objects.select_for_update().get(pk=row.pk)
            if BillingEvent.objects.filter(
                user=row.user,
                kind=BillingEvent.Kind.DUNNING_REMINDER,
                created_at__gte=row.past_due_since,
                detail__hours_before=stage,
            ).exists():
                continue
            url = open_invoice_url(user=row.user)
            billing_event_record(
                user=row.user, kind=BillingEvent.Kind.DUNNING_REMINDER, source="system", hours_before=stage, url=url
            )
            _notify(
                user=row.user,
                subject="Your QuantMesh Cloud payment is still due",
                message=f"Your instances stop on {stop_at:%Y-%m-%d %H:%M} UTC unless the invoice is paid (their data "
                f"is kept). " + (f"Pay here: {url}" if url else "Update your card on the billing page."),
            )
            sent += 1
    return sent


def referral_code_for(*, user) -> ReferralCode:
    code = ReferralCode.objects.filter(user=user).first()
    while code is None:
        candidate = secrets.token_urlsafe(6).replace("-", "x").replace("_", "y")
        if not ReferralCode.objects.filter(code=candidate).exists():
            code = ReferralCode.objects.create(user=user, code=candidate)
    return code


def _mailbox(email: str) -> tuple[str, str]:
    """The e-mail's mailbox as a person owns it: lower-case, without a +tag, and for Gmail without dots."""
    local, _, domain = email.lower().strip().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in ("gmail.com", "googlemail.com"):
        local, domain = local.replace(".", ""), "gmail.com"
    return local, domain


def referral_same_person(referrer, referred) -> str:
    """Why `referred` looks like `referrer` themself (empty: it does not), by e-mail: the same
    account, the same mailbox (tags and Gmail dots ignored), or the same e-mail domain unless it is a
    public mail provider's."""
    if referrer.pk == referred.pk:
        return "same account"
    (mine, my_domain), (theirs, their_domain) = _mailbox(referrer.email), _mailbox(referred.email)
    if (mine, my_domain) == (theirs, their_domain):
        return "same mailbox"
    if my_domain == their_domain and my_domain not in settings.QM_REFERRAL_PUBLIC_EMAIL_DOMAINS:
        return f"same e-mail domain ({my_domain})"
    return ""


def referral_record(*, referred, code: str) -> Referral | None:
    """The new user `referred` came through `code`'s link. Unknown codes and self-referrals (see
    `referral_same_person`) are ignored; a refused one leaves an audit row for the link's owner."""
    owner = ReferralCode.objects.filter(code=code).select_related("user").first()
    if owner is None:
        return None
    reason = referral_same_person(owner.user, referred)
    if reason:
        if owner.user_id != referred.pk:
            billing_event_record(
                user=owner.user,
                kind=BillingEvent.Kind.REFERRAL_REFUSED,
                source="system",
                referred=referred.email,
                reason=reason,
            )
        return None
    referral, _ = Referral.objects.get_or_create(referred=referred, defaults={"referrer": owner.user})
    return referral


def _same_card(referral: Referral) -> bool:
    """Whether the referred customer pays with a card the referrer also has (the same person with two
    accounts and two e-mail addresses)."""
    from djstripe.models import Customer

    customers = Customer.objects.filter(subscriber__in=[referral.referrer, referral.referred], date_purged__isnull=True)
    by_user = {c.subscriber_id: c.id for c in customers}
    if len(by_user) < 2:
        return False
    mine = stripe_gateway.card_fingerprints(customer_id=by_user[referral.referrer_id])
    return bool(mine & stripe_gateway.card_fingerprints(customer_id=by_user[referral.referred_id]))


def referral_credit(*, referred, amount_paid: int, currency: str, invoice_id: str) -> Referral | None:
    """Credit the referrer once, on the referred user's first paid invoice, unless both pay with the
    same card. Stripe is called outside the lock (the idempotency key makes a retry credit once);
    the row is written afterwards under the lock, re-checked."""
    referral = Referral.objects.select_related("referrer").filter(referred=referred, credited_at__isnull=True).first()
    if referral is None:
        return None
    credit = amount_paid * settings.QM_REFERRAL_CREDIT_PERCENT // 100
    transaction_id = ""
    refused = ""
    if _stripe():
        if _same_card(referral):
            refused, credit = "same card", 0
        else:
            transaction_id = stripe_gateway.customer_balance_adjust(
                user=referral.referrer,
                amount=-credit,
                currency=currency,
                description=f"Referral credit: {referred.email} subscribed",
                idempotency_key=f"qm-referral-{referral.pk}",
            )
    with transaction.atomic():
        referral = Referral.objects.select_for_update().get(pk=referral.pk)
        if referral.credited_at is not None:
            return referral
        referral.credit_cents, referral.currency, referral.credited_at = credit, currency, timezone.now()
        referral.stripe_balance_transaction_id, referral.credit_invoice_id = transaction_id, invoice_id
        referral.save()
        if refused:
            billing_event_record(
                user=referral.referrer,
                kind=BillingEvent.Kind.REFERRAL_REFUSED,
                source="stripe",
                referred=referred.email,
                reason=refused,
            )
        else:
            billing_event_record(
                user=referral.referrer,
                kind=BillingEvent.Kind.REFERRAL_CREDITED,
                source="stripe" if _stripe() else "system",
                amount=credit,
                currency=currency,
                referred=referred.email,
            )
    return referral


def referral_claw_back(*, referred, reason: str, charge_id: str) -> Referral | None:
    """The referred customer's payment was refunded or disputed: the referrer's credit is taken back
    (a debit on their Stripe balance of the same amount), once."""
    referral = (
        Referral.objects.select_related("referrer")
        .filter(referred=referred, credited_at__isnull=False, clawed_back_at__isnull=True, credit_cents__gt=0)
        .first()
    )
    if referral is None:
        return None
    transaction_id = ""
    if _stripe() and referral.stripe_balance_transaction_id:
        transaction_id = stripe_gateway.customer_balance_adjust(
            user=referral.referrer,
            amount=referral.credit_cents,
            currency=referral.currency,
            description=f"Referral credit taken back: {referred.email}'s payment was {reason}",
            idempotency_key=f"qm-referral-clawback-{referral.pk}",
        )
    with transaction.atomic():
        referral = Referral.objects.select_for_update().get(pk=referral.pk)
        if referral.clawed_back_at is not None:
            return referral
        referral.clawed_back_at, referral.clawback_balance_transaction_id = timezone.now(), transaction_id
        referral.save(update_fields=["clawed_back_at", "clawback_balance_transaction_id"])
        billing_event_record(
            user=referral.referrer,
            kind=BillingEvent.Kind.REFERRAL_CLAWED_BACK,
            source="stripe",
            amount=referral.credit_cents,
            currency=referral.currency,
            referred=referred.email,
            reason=reason,
            charge=charge_id,
        )
    return referral
