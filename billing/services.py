"""State changes of billing."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .catalogue import PLAN_CATALOGUE, yearly_price_cents
from .models import Plan, Subscription


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
    period = timedelta(days=365 if interval == Subscription.Interval.YEAR else 30)
    with transaction.atomic():
        subscription, _ = Subscription.objects.update_or_create(
            user=user,
            defaults={
                "plan": plan,
                "interval": interval,
                "status": Subscription.Status.ACTIVE,
                "provider": Subscription.Provider.LOCAL,
                "current_period_end": timezone.now() + period,
                "cancel_at_period_end": False,
            },
        )
    return subscription
