"""Subscriptions as the user changes them (subscribe, change plan, cancel) and as time ends them
(expiry, dunning). Stripe is called outside any transaction; rows are written afterwards under
their lock, re-checked."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from quantmesh.errors import ServiceError

from .. import stripe_gateway
from ..models import BillingEvent, Plan, Subscription
from ..selectors import ENTITLED_STATUSES, TRIAL_DAYS, entitlements_for, grace_ends_at, open_invoice_url
from ..signals import plan_change_check
from .shared import (
    billing_event_record,
    customer_notify,
    entitlements_enforce,
    gateway_error,
    stripe_enabled,
)
from .stripe_sync import subscription_sync_from_stripe


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
    if not stripe_enabled():
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
        raise gateway_error(error) from error
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
        raise gateway_error(error) from error
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
        customer_notify(
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
    if stripe_enabled():
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
            raise gateway_error(error) from error
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
            customer_notify(
                user=row.user,
                subject="Your QuantMesh Cloud payment is still due",
                message=f"Your instances stop on {stop_at:%Y-%m-%d %H:%M} UTC unless the invoice is paid (their data "
                f"is kept). " + (f"Pay here: {url}" if url else "Update your card on the billing page."),
            )
            sent += 1
    return sent
