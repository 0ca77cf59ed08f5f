"""How instances follow the user's plan (billing's signals; billing never touches instances)."""

from __future__ import annotations

import logging

from django.dispatch import receiver

from billing.signals import entitlements_changed, plan_change_check

from . import engine_client, services
from .runtime import get_backend
from .runtime.base import BackendError, RuntimeState
from .selectors import instance_list_live

logger = logging.getLogger(__name__)
MEMORY_HEADROOM = 0.8  # a downgrade must leave the engine this much of the new memory limit at most


@receiver(plan_change_check)
def instances_fitting_plan(sender, user, plan, **kwargs) -> list[dict]:
    """What keeps the user's instances from fitting `plan`: too many of them, or a running engine
    trading more pairs or using more memory than the plan gives."""
    instances = list(instance_list_live(owner=user))
    problems = []
    if plan.max_instances is not None and len(instances) > plan.max_instances:
        for instance in instances[plan.max_instances :]:
            problems.append(
                {
                    "instance_id": instance.instance_id,
                    "reason": f"the {plan.name} plan allows {plan.max_instances} instance(s)",
                }
            )
    if not problems or plan.tier < max((i.plan.tier for i in instances), default=0):
        backend = get_backend()
        for instance in instances:
            if instance.plan.tier <= plan.tier or backend.status(instance.instance_id).state != RuntimeState.RUNNING:
                continue
            reply = engine_client.engine_request(instance, "/api/status", backend=backend)
            pairs = len(reply.json().get("symbols", [])) if reply and reply.status == 200 else 0
            if plan.max_trading_pairs is not None and pairs > plan.max_trading_pairs:
                problems.append(
                    {
                        "instance_id": instance.instance_id,
                        "reason": f"trades {pairs} pairs; the {plan.name} plan allows {plan.max_trading_pairs}",
                    }
                )
            try:
                used = backend.stats(instance.instance_id).memory_bytes
            except BackendError:
                continue
            if used > plan.memory_limit_mb * 1024 * 1024 * MEMORY_HEADROOM:
                problems.append(
                    {
                        "instance_id": instance.instance_id,
                        "reason": f"uses {used // 2**20} MB; the {plan.name} plan gives {plan.memory_limit_mb} MB",
                    }
                )
    return problems


@receiver(entitlements_changed)
def instances_follow_entitlements(sender, user, reason: str, plan_changed: bool = False, **kwargs) -> list[str]:
    return services.instances_enforce_plan(owner=user, reason=reason, follow_plan=plan_changed)
