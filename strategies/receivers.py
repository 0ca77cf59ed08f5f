"""Adaptive instances follow the plan: after a change of entitlements (a downgrade), and when an
engine comes up (one that was stopped during the downgrade could not be changed then)."""

from __future__ import annotations

from django.dispatch import receiver

from billing.signals import entitlements_changed
from instances.models import InstanceEvent
from instances.signals import instance_events_recorded
from quantmesh.tasks import enqueue_on_commit

from .gating import ai_strategy_allowed
from .tasks import enforce_plan, enforce_plan_on_start


@receiver(entitlements_changed)
def strategies_follow_entitlements(sender, user, reason: str, **kwargs) -> None:
    if not ai_strategy_allowed(user):
        enqueue_on_commit(enforce_plan, user.pk, reason)


@receiver(instance_events_recorded)
def strategies_checked_on_start(sender, events, **kwargs) -> None:
    for event in events:
        if event.kind == InstanceEvent.Kind.RUNNING and not ai_strategy_allowed(event.instance.owner):
            enqueue_on_commit(enforce_plan_on_start, event.instance.instance_id)
