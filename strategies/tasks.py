"""Thin Celery tasks: load an id, call a service. Idempotent and safe to retry."""

from __future__ import annotations

from celery import shared_task
from django.contrib.auth import get_user_model

from instances.models import Instance
from instances.tasks import RETRIED

from . import services
from .gating import ai_strategy_allowed


@shared_task(acks_late=True, autoretry_for=RETRIED, retry_backoff=2, max_retries=5)
def advice_run(run_id: str) -> str | None:
    run = services.advice_run_execute(run_id=run_id)
    return run.status if run else None


@shared_task(acks_late=True, autoretry_for=RETRIED, retry_backoff=2, max_retries=5)
def enforce_plan(user_id: int, reason: str) -> list[str]:
    owner = get_user_model().objects.filter(pk=user_id).first()
    return services.strategies_enforce_plan(owner=owner, reason=reason) if owner else []


@shared_task(acks_late=True, autoretry_for=RETRIED, retry_backoff=2, max_retries=5)
def enforce_plan_on_start(instance_id: str) -> bool | None:
    instance = Instance.objects.select_related("owner").filter(instance_id=instance_id).first()
    if instance is None or instance.status != Instance.Status.RUNNING or ai_strategy_allowed(instance.owner):
        return None
    return services.strategy_revert_to_grid(instance=instance, reason="your plan does not include it")
