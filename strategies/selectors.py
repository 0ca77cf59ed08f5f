"""Reads of the strategies app."""

from __future__ import annotations

from django.db.models import QuerySet

from instances.models import Instance, InstanceEvent

from .models import AdviceRun


def advice_run_list(*, instance: Instance) -> QuerySet[AdviceRun]:
    return AdviceRun.objects.filter(instance=instance).order_by("-created_at", "-id")


def advice_run_get(*, instance: Instance, run_id: str) -> AdviceRun | None:
    return AdviceRun.objects.filter(instance=instance, run_id=run_id).select_related("instance").first()


def strategy_notice(*, instance: Instance) -> InstanceEvent | None:
    """The newest move back to the grid by the plan, unless the customer applied a strategy since."""
    latest = instance.events.filter(kind__in=["strategy_reverted", "strategy_applied"]).first()
    return latest if latest is not None and latest.kind == "strategy_reverted" else None
