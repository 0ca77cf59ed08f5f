"""State changes of billing."""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from quantmesh.api.errors import ApiError

from . import stripe_gateway
from .catalogue import PLAN_CATALOGUE, yearly_price_cents
from .models import BillingEvent, Plan, Referral, ReferralCode, Subscription
from .selectors import ENTITLED_STATUSES, TRIAL_DAYS, entitlements_for
from .signals import entitlement_lost, payment_failed, plan_change_check, plan_changed

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
        month, year = stripe_gateway.product_and_prices_sync(plan=plan, yearly_cents=plan.price_yearly_cents)
        if (plan.stripe_price_month_id, plan.stripe_price_year_id) != (month, year):
            plan.stripe_price_month_id, plan.stripe_price_year_id = month, year
            plan.save(update_fields=["stripe_price_month_id", "stripe_price_year_id"])
        result[plan.code] = (month, year)
    return result


def stripe_webhook_endpoint_ensure(*, base_url: str):
    """The endpoint Stripe posts this portal's webhooks to, created once."""
    return stripe_gateway.webhook_endpoint_ensure(base_url=base_url)


def billing_event_record(*, user, kind: str, source: str, **detail) -> BillingEvent:
    return BillingEvent.objects.create(user=user, kind=kind, source=source, detail=detail)


def _stripe() -> bool:
    return settings.QM_BILLING_PROVIDER == "stripe"


def _gateway_error(error: stripe_gateway.StripeUnavailable) -> ApiError:
    return ApiError(
        code="payment_provider_unavailable",
        message=f"Stripe could not complete the request ({error}); nothing was changed, try again shortly.",
        status_code=503,
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
    return subscription


def _plan_or_400(code: str, *, field: str) -> Plan:
    plan = Plan.objects.filter(code=code, is_active=True).first()
    if plan is None:
        raise ApiError(
            code="unknown_plan",
            message=f'{field}: "{code}" is not a plan; choose personal, professional or enterprise.',
            details={field: [f'"{code}" is not a valid choice.']},
        )
    return plan


def _stripe_price(plan: Plan, interval: str) -> str:
    price_id = plan.stripe_price_year_id if interval == Subscription.Interval.YEAR else plan.stripe_price_month_id
    if not price_id:
        raise ApiError(
            code="plan_not_for_sale",
            message=f"The {plan.name} plan has no Stripe price yet; staff must run `manage.py billing_stripe_sync`.",
            status_code=503,
        )
    return price_id


def subscription_create(*, user, plan_code: str, interval: str) -> str | None:
    """Subscribe the user. With Stripe this starts Checkout and returns its URL (the subscription
    exists once Stripe's webhook says it was paid); with the local provider the plan is granted
    at once and None is returned."""
    plan = _plan_or_400(plan_code, field="plan")
    existing = Subscription.objects.filter(user=user, status__in=ENTITLED_STATUSES).first()
    if existing is not None:
        raise ApiError(
            code="already_subscribed",
            message=f"You already have the {existing.plan.name} plan: use update-plan to change it.",
            status_code=409,
        )
    if not _stripe():
        subscription_grant_local(user=user, plan=plan, interval=interval)
        transaction.on_commit(lambda: plan_changed.send(sender=Subscription, user=user, plan=plan))
        return None
    price_id = _stripe_price(plan, interval)
    billing_url = settings.QM_PUBLIC_URL + reverse("billing")
    try:
        url = stripe_gateway.checkout_session_create(
            user=user,
            price_id=price_id,
            plan_code=plan.code,
            interval=interval,
            success_url=billing_url + "?checkout=success",
            cancel_url=billing_url + "?checkout=canceled",
        )
    except stripe_gateway.StripeUnavailable as error:
        raise _gateway_error(error) from error
    billing_event_record(
        user=user, kind=BillingEvent.Kind.CHECKOUT_STARTED, source="user", plan=plan.code, interval=interval
    )
    return url


def subscription_change_plan(*, user, new_plan_code: str) -> Subscription:
    """Upgrade (limits of running instances rise in place) or downgrade (refused with 409 and the
    list of what is over when the user's instances do not fit the new plan)."""
    plan = _plan_or_400(new_plan_code, field="new_plan")
    with transaction.atomic():
        subscription = (
            Subscription.objects.select_for_update()
            .select_related("plan")
            .filter(user=user, status__in=ENTITLED_STATUSES)
            .first()
        )
        if subscription is None:
            raise ApiError(
                code="no_subscription", message="You have no plan to change: subscribe first.", status_code=409
            )
        if subscription.plan_id == plan.pk:
            return subscription
        problems = [p for _, found in plan_change_check.send(sender=Subscription, user=user, plan=plan) for p in found]
        if problems:
            raise ApiError(
                code="plan_does_not_fit",
                message=f"Your instances do not fit the {plan.name} plan: delete or stop using what is listed.",
                status_code=409,
                details={"over": problems},
            )
        if subscription.provider == Subscription.Provider.STRIPE:
            price_id = _stripe_price(plan, subscription.interval)
            try:
                remote = stripe_gateway.subscription_change_price(
                    subscription_id=subscription.stripe_subscription_id, price_id=price_id
                )
            except stripe_gateway.StripeUnavailable as error:
                raise _gateway_error(error) from error
            return subscription_sync_from_stripe(stripe_subscription=remote, source="user")
        _require_local_provider()
        previous = subscription.plan.code
        subscription.plan = plan
        subscription.cancel_at_period_end = False
        subscription.save(update_fields=["plan", "cancel_at_period_end", "updated_at"])
        billing_event_record(
            user=user, kind=BillingEvent.Kind.PLAN_CHANGED, source="user", plan=plan.code, previous=previous
        )
        transaction.on_commit(lambda: plan_changed.send(sender=Subscription, user=user, plan=plan))
    return subscription


def _require_local_provider() -> None:
    # A local grant while Stripe is configured would be a plan nobody pays for.
    if _stripe():
        raise ApiError(
            code="payment_required",
            message="This plan was granted without payment; subscribe through Stripe Checkout on the billing page.",
            status_code=402,
        )


def subscription_cancel(*, user, immediately: bool) -> Subscription:
    """Immediately: the plan ends now and the instances stop gracefully (data kept). Otherwise the
    instances run until the paid period ends, then stop."""
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().filter(user=user, status__in=ENTITLED_STATUSES).first()
        if subscription is None:
            raise ApiError(code="no_subscription", message="You have no active plan to cancel.", status_code=409)
        if subscription.provider == Subscription.Provider.STRIPE:
            try:
                remote = stripe_gateway.subscription_cancel(
                    subscription_id=subscription.stripe_subscription_id, at_period_end=not immediately
                )
            except stripe_gateway.StripeUnavailable as error:
                raise _gateway_error(error) from error
            return subscription_sync_from_stripe(stripe_subscription=remote, source="user")
        if immediately:
            subscription.status = Subscription.Status.CANCELED
            subscription.current_period_end = timezone.now()
            subscription.save(update_fields=["status", "current_period_end", "updated_at"])
            billing_event_record(user=user, kind=BillingEvent.Kind.CANCELED, source="user", immediately=True)
            transaction.on_commit(lambda: entitlement_lost.send(sender=Subscription, user=user, reason="plan canceled"))
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


def _plan_for_price(price_id: str) -> tuple[Plan | None, str]:
    plan = Plan.objects.filter(stripe_price_month_id=price_id).first()
    if plan is not None:
        return plan, Subscription.Interval.MONTH
    return Plan.objects.filter(stripe_price_year_id=price_id).first(), Subscription.Interval.YEAR


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
    plan, interval = _plan_for_price(price.get("id", ""))
    status = STRIPE_STATUS.get(data.get("status"))
    if plan is None or status is None:
        logger.warning(
            "Stripe subscription %s: price %s / status %s not sold here; ignored",
            stripe_subscription.id,
            price.get("id"),
            data.get("status"),
        )
        return Subscription.objects.filter(user=user).first()
    period_end_ts = item.get("current_period_end") or data.get("current_period_end")
    period_end = datetime.fromtimestamp(period_end_ts, tz=UTC) if period_end_ts else None
    with transaction.atomic():
        row = Subscription.objects.select_for_update().select_related("plan").filter(user=user).first()
        if (
            row is not None
            and row.stripe_subscription_id
            and row.stripe_subscription_id != stripe_subscription.id
            and row.status in ENTITLED_STATUSES
            and status == Subscription.Status.CANCELED
        ):
            # A late event about an older, ended subscription: the current one stands.
            return row
        before = (row.plan_id, row.status) if row is not None else (None, None)
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
        row.save()
        entitled = status in ENTITLED_STATUSES
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
            transaction.on_commit(lambda: entitlement_lost.send(sender=Subscription, user=user, reason="plan canceled"))
        elif entitled and before[0] != plan.pk:
            transaction.on_commit(lambda: plan_changed.send(sender=Subscription, user=user, plan=plan))
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
        # Stripe ends its own subscriptions and tells us by webhook; local ones end here.
        subscription.status = Subscription.Status.CANCELED
        subscription.save(update_fields=["status", "updated_at"])
        billing_event_record(user=subscription.user, kind=BillingEvent.Kind.CANCELED, source="system")
        entitlement_lost.send(sender=Subscription, user=subscription.user, reason="plan ended")
        ended += 1
    users = get_user_model().objects
    unpaid = users.filter(
        subscription__status=Subscription.Status.PAST_DUE,
        subscription__past_due_since__lte=now - settings.QM_PAYMENT_GRACE,
        instances__status="running",
    ).distinct()
    for user in unpaid:
        billing_event_record(user=user, kind=BillingEvent.Kind.SUSPENDED, source="system", reason="payment overdue")
        entitlement_lost.send(sender=Subscription, user=user, reason="payment overdue")
        ended += 1
    # Trials: users past their trial, without a subscription, who still have instances running.
    trial_over = users.filter(
        subscription__isnull=True, date_joined__lte=now - timedelta(days=TRIAL_DAYS), instances__status="running"
    ).distinct()
    for user in trial_over:
        if entitlements_for(user).plan is None:
            entitlement_lost.send(sender=Subscription, user=user, reason="trial ended")
            ended += 1
    return ended


def referral_code_for(*, user) -> ReferralCode:
    code = ReferralCode.objects.filter(user=user).first()
    while code is None:
        candidate = secrets.token_urlsafe(6).replace("-", "x").replace("_", "y")
        if not ReferralCode.objects.filter(code=candidate).exists():
            code = ReferralCode.objects.create(user=user, code=candidate)
    return code


def referral_record(*, referred, code: str) -> Referral | None:
    """The new user `referred` came through `code`'s link. Unknown codes and self-referrals are ignored."""
    owner = ReferralCode.objects.filter(code=code).select_related("user").first()
    if owner is None or owner.user_id == referred.pk:
        return None
    referral, _ = Referral.objects.get_or_create(referred=referred, defaults={"referrer": owner.user})
    return referral


def referral_credit(*, referred, amount_paid: int, currency: str, invoice_id: str) -> Referral | None:
    """Credit the referrer once, on the referred user's first paid invoice."""
    with transaction.atomic():
        referral = Referral.objects.select_for_update().filter(referred=referred, credited_at__isnull=True).first()
        if referral is None:
            return None
        credit = amount_paid * settings.QM_REFERRAL_CREDIT_PERCENT // 100
        referral.credit_cents = credit
        referral.currency = currency
        referral.credited_at = timezone.now()
        if _stripe():
            try:
                referral.stripe_balance_transaction_id = stripe_gateway.customer_credit(
                    user=referral.referrer,
                    amount_cents=credit,
                    currency=currency,
                    description=f"Referral credit: {referred.email} subscribed",
                    # Stripe applies a retried request once.
                    idempotency_key=f"qm-referral-{referral.pk}-{invoice_id}",
                )
            except stripe_gateway.StripeUnavailable:
                logger.exception("Referral credit for %s could not reach Stripe; will retry with the event", referral)
                raise
        referral.save()
        billing_event_record(
            user=referral.referrer,
            kind=BillingEvent.Kind.REFERRAL_CREDITED,
            source="stripe" if _stripe() else "system",
            amount_cents=credit,
            currency=currency,
            referred=referred.email,
        )
    return referral
