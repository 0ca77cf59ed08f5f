"""Adaptive instances follow the plan: after a change of entitlements (a downgrade), and when an
engine comes up (one that was stopped during the downgrade could not be changed then)."""

from __future__ import annotations

from django.db import transaction
from django.dispatch import receiver

from billing.signals import entitlements_changed
from instances.signals import instance_events_recorded

from .gating import ai_strategy_allowed


@receiver(entitlements_changed)
def strategies_follow_entitlements(sender, user, reason: str, **kwargs) -> None:
    from .tasks import enforce_plan

    if not ai_strategy_allowed(user):
        transaction.on_commit(lambda: enforce_plan.delay(user.pk, reason))


@receiver(instance_events_recorded)
def strategies_checked_on_start(sender, events, **kwargs) -> None:
    from .tasks import enforce_plan_on_start

    for event in events:
        if event.kind == "running" and not ai_strategy_allowed(event.instance.owner):
            transaction.on_commit(
                lambda instance_id=event.instance.instance_id: enforce_plan_on_start.delay(instance_id)
            )
