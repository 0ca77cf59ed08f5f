"""State changes of billing."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from quantmesh.api.errors import ApiError

from .catalogue import PLAN_CATALOGUE, yearly_price_cents
from .models import Plan, Subscription
from .selectors import ENTITLED_STATUSES
from .signals import entitlement_lost, plan_change_check, plan_changed


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
            },
        )
    return subscription


def _period_end(interval: str):
    return timezone.now() + timedelta(days=365 if interval == Subscription.Interval.YEAR else 30)


def _require_local_provider() -> None:
    # Stripe Checkout is the way to pay when keys are configured; the local grant is for laptops only.
    if settings.QM_BILLING_PROVIDER != "local":
        raise ApiError(
            code="payment_required",
            message="Subscriptions are paid through Stripe Checkout on the billing page.",
            status_code=402,
        )


def subscription_create(*, user, plan_code: str, interval: str) -> Subscription:
    plan = _plan_or_400(plan_code, field="plan")
    existing = Subscription.objects.filter(user=user, status__in=ENTITLED_STATUSES).first()
    if existing is not None:
        raise ApiError(
            code="already_subscribed",
            message=f"You already have the {existing.plan.name} plan: use update-plan to change it.",
            status_code=409,
        )
    _require_local_provider()
    with transaction.atomic():
        subscription = subscription_grant_local(user=user, plan=plan, interval=interval)
    transaction.on_commit(lambda: plan_changed.send(sender=Subscription, user=user, plan=plan))
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
        _require_local_provider()
        subscription.plan = plan
        subscription.cancel_at_period_end = False
        subscription.save(update_fields=["plan", "cancel_at_period_end", "updated_at"])
        transaction.on_commit(lambda: plan_changed.send(sender=Subscription, user=user, plan=plan))
    return subscription


def subscription_cancel(*, user, immediately: bool) -> Subscription:
    """Immediately: the plan ends now and the instances stop gracefully (data kept). Otherwise the
    instances run until the paid period ends, then stop."""
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().filter(user=user, status__in=ENTITLED_STATUSES).first()
        if subscription is None:
            raise ApiError(code="no_subscription", message="You have no active plan to cancel.", status_code=409)
        if immediately:
            subscription.status = Subscription.Status.CANCELED
            subscription.current_period_end = timezone.now()
            subscription.save(update_fields=["status", "current_period_end", "updated_at"])
            transaction.on_commit(lambda: entitlement_lost.send(sender=Subscription, user=user))
        else:
            subscription.cancel_at_period_end = True
            subscription.save(update_fields=["cancel_at_period_end", "updated_at"])
    return subscription


def subscriptions_expire() -> int:
    """Periodic: end subscriptions whose canceled period is over and trials that ran out; their
    owners' instances stop. Returns how many users lost their entitlement."""
    from .selectors import TRIAL_DAYS, entitlements_for

    now = timezone.now()
    ended = 0
    for subscription in Subscription.objects.select_related("user").filter(
        status__in=ENTITLED_STATUSES, cancel_at_period_end=True, current_period_end__lte=now
    ):
        subscription.status = Subscription.Status.CANCELED
        subscription.save(update_fields=["status", "updated_at"])
        entitlement_lost.send(sender=Subscription, user=subscription.user)
        ended += 1
    # Trials: users past their trial, without a subscription, who still have instances running.
    from django.contrib.auth import get_user_model

    trial_over = (
        get_user_model()
        .objects.filter(
            subscription__isnull=True, date_joined__lte=now - timedelta(days=TRIAL_DAYS), instances__status="running"
        )
        .distinct()
    )
    for user in trial_over:
        if entitlements_for(user).plan is None:
            entitlement_lost.send(sender=Subscription, user=user)
            ended += 1
    return ended
