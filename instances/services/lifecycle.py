"""The request side of an instance's life (API, console, admin, billing's enforcement): create,
start, stop, restart, delete, move, change plan.

Requests change the desired state under the row lock and hand the real work to `instance_converge`
(services/converge.py), queued once the request's transaction commits.
"""

from __future__ import annotations

import secrets
import string
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.selectors import entitlements_for, plan_get
from quantmesh.crypto import encrypt
from quantmesh.errors import ServiceError
from quantmesh.tasks import enqueue_on_commit

from .. import tasks
from ..events import instance_event_record
from ..models import Instance
from ..selectors import instance_list_live
from .domains import domains_follow_plan
from .state import MIGRATION_ACTIVE, STATUS_FIELDS, D, K, S, instance_locked, status_set

SLUG_ALPHABET = string.ascii_lowercase + string.digits
# A start or restart resets the crash-loop count with the status.
RESTART_FIELDS = ["desired_state", "restart_count", "next_restart_at", *STATUS_FIELDS]


def _new_slug() -> str:
    return "".join(secrets.choice(SLUG_ALPHABET) for _ in range(6))


def _enqueue_converge(instance: Instance) -> None:
    enqueue_on_commit(tasks.converge, instance.instance_id)


def _valid_region(region: str) -> str:
    if region not in settings.QM_REGIONS and (region or settings.QM_REGIONS):
        choices = ", ".join(settings.QM_REGIONS) or "none: this platform runs in one place"
        raise ServiceError(
            code="unknown_region",
            message=f'region: "{region}" is not a region; choose {choices}.',
            details={"region": [f'"{region}" is not a valid choice.'], "regions": list(settings.QM_REGIONS)},
        )
    return region


def instance_create(
    *, owner, plan_code: str, idempotency_key: str | None = None, region: str | None = None
) -> Instance:
    """Create an instance of `plan_code` for `owner` in `region` (default: QM_DEFAULT_REGION) and
    start provisioning it.

    A retried request with the same idempotency key returns the instance the first one made.
    """
    region = _valid_region(settings.QM_DEFAULT_REGION if region is None else region)
    if idempotency_key:
        existing = Instance.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
    plan = plan_get(code=plan_code)
    if plan is None:
        raise ServiceError(
            code="unknown_plan",
            message=f'plan: "{plan_code}" is not a plan; choose personal, professional or enterprise.',
            details={"plan": [f'"{plan_code}" is not a valid choice.']},
        )
    _require_plan(owner)
    rights = entitlements_for(owner)
    if not rights.allows_plan(plan):
        raise ServiceError(
            code="plan_not_allowed",
            message=f"Your {rights.plan.name} plan cannot create {plan.name} instances: upgrade first.",
            status=403,
            details={"your_plan": rights.plan.code, "requested_plan": plan.code},
        )
    try:
        with transaction.atomic():
            # Serialise creates per owner so two concurrent requests cannot both pass the limit.
            get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
            live = Instance.objects.filter(owner=owner).exclude(status=S.DELETED).count()
            if rights.max_instances is not None and live >= rights.max_instances:
                raise ServiceError(
                    code="instance_limit_reached",
                    message=f"Your {rights.plan.name} plan allows {rights.max_instances} instance(s) "
                    f"and you have {live}: delete one or upgrade.",
                    status=403,
                    details={"limit": rights.max_instances, "current": live},
                )
            slug = _new_slug()
            while Instance.objects.filter(slug=slug).exists():
                slug = _new_slug()
            instance = Instance.objects.create(
                instance_id=f"qm-{slug}-{int(time.time())}",
                slug=slug,
                owner=owner,
                plan=plan,
                desired_state=D.RUNNING,
                status=S.PROVISIONING,
                image=settings.QM_ENGINE_IMAGE,
                proxy_secret_encrypted=encrypt(secrets.token_urlsafe(32)),
                idempotency_key=idempotency_key or None,
                region=region,
            )
            instance_event_record(instance=instance, kind=K.CREATED, actor=owner, plan=plan.code, region=region)
            _enqueue_converge(instance)
    except IntegrityError:
        # The same idempotency key raced us: the other request's instance is the answer.
        if idempotency_key:
            return Instance.objects.get(owner=owner, idempotency_key=idempotency_key)
        raise
    return instance


def instance_stop(*, instance: Instance, actor=None, reason: str = "", kind: str = K.STOP_REQUESTED) -> Instance:
    """Stop gracefully; stopping a stopped instance changes nothing and answers its state."""
    with transaction.atomic():
        instance = instance_locked(instance)
        if instance.desired_state == D.STOPPED or instance.status in (S.STOPPED, S.DELETING, S.DELETED):
            return instance
        instance.desired_state = D.STOPPED
        instance.save(update_fields=["desired_state"])
        extra = {"reason": reason} if reason else {}
        instance_event_record(instance=instance, kind=kind, actor=actor, from_status=instance.status, **extra)
        _enqueue_converge(instance)
    return instance


def _require_plan(owner) -> None:
    if entitlements_for(owner).plan is None:
        raise ServiceError(
            code="no_subscription",
            message="You have no active plan: subscribe to create or start instances (stopped ones keep their data).",
            status=403,
        )


def _lock_owner(owner) -> None:
    # One owner's starts and enforcements run one at a time, so two cannot both pass the limit.
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()


def instances_enforce_plan(*, owner, reason: str, follow_plan: bool = False) -> list[str]:
    """The one path that brings an owner's instances and custom domains within their plan, after any
    change of what they may run (subscribe, upgrade, downgrade, cancel, unpaid, expiry, reconcile,
    whatever the source) and before every start or restart.

    Instances above the plan come down to it (with `follow_plan`, after the plan itself changed,
    every instance takes the plan's limits, up or down); running instances beyond the plan's count stop, newest
    first (their data is kept), each with an audit event saying why (which alerts the customer);
    domains the plan no longer allows stop being routed, and are routed again when it does.
    Idempotent. Returns the ids of the instances it stopped."""
    rights = entitlements_for(owner)
    stopped = []
    with transaction.atomic():
        _lock_owner(owner)
        live = list(instance_list_live(owner=owner))
        if rights.plan is not None:
            for instance in live:
                above = instance.plan.tier > rights.plan.tier
                if instance.plan_id != rights.plan.pk and (above or follow_plan):
                    instance_change_plan(instance=instance, plan=rights.plan)  # its platform file too
                else:  # the engine's own checks (trial, AI strategy) follow the owner, not the instance's plan
                    enqueue_on_commit(tasks.platform_refresh, instance.instance_id)
        running = [i for i in live if i.desired_state == D.RUNNING]
        if rights.plan is None:
            over, why = running, f"No active plan ({reason}): the instance was stopped; its data is kept."
        else:
            allowed = rights.max_instances
            over = [] if allowed is None else running[allowed:]
            why = (
                f"The {rights.plan.name} plan allows {allowed} running instance(s): the newest were stopped "
                f"({reason}); their data is kept. Upgrade, or stop another instance to start this one."
            )
        for instance in reversed(over):
            instance_stop(instance=instance, reason=why, kind=K.STOPPED_BY_PLAN)
            stopped.append(instance.instance_id)
        domains_follow_plan(instances=live, routed=rights.has_feature("custom_domain"), reason=reason)
    return stopped


def _require_room_to_run(instance: Instance) -> None:
    """Refuse (403, naming the limit) to run an instance beyond the owner's plan. Caller holds the owner lock."""
    rights = entitlements_for(instance.owner)
    if rights.plan is None:
        _require_plan(instance.owner)
    others = instance_list_live(owner=instance.owner).filter(desired_state=D.RUNNING).exclude(pk=instance.pk).count()
    if rights.max_instances is not None and others >= rights.max_instances:
        raise ServiceError(
            code="instance_limit_reached",
            message=f"Your {rights.plan.name} plan allows {rights.max_instances} running instance(s) and "
            f"{others} already run: stop one or upgrade.",
            status=403,
            details={"limit": rights.max_instances, "running": others, "plan": rights.plan.code},
        )


def instance_start(*, instance: Instance, actor=None) -> Instance:
    return _run_requested(instance=instance, actor=actor, restart=False)


def instance_restart(*, instance: Instance, actor=None) -> Instance:
    return _run_requested(instance=instance, actor=actor, restart=True)


def _run_requested(*, instance: Instance, actor, restart: bool) -> Instance:
    """Ask for the instance to run, within the owner's plan and under the owner's lock: a restart always
    goes through; a start of an instance already meant to run (and not failed) changes nothing."""
    _require_plan(instance.owner)
    instances_enforce_plan(owner=instance.owner, reason="restart" if restart else "start")
    with transaction.atomic():
        _lock_owner(instance.owner)
        instance = instance_locked(instance)
        if instance.status in (S.DELETING, S.DELETED):
            raise ServiceError(code="instance_deleted", message="This instance is being deleted.", status=409)
        if not restart and instance.desired_state == D.RUNNING and instance.status != S.FAILED:
            return instance
        _require_room_to_run(instance)
        instance.desired_state = D.RUNNING
        instance.restart_count = 0
        instance.next_restart_at = None
        if restart:
            status_set(instance, S.RESTARTING, kind=K.RESTART_REQUESTED, actor=actor)
        else:
            status_set(instance, S.PROVISIONING, kind=K.START_REQUESTED, actor=actor)
        instance.save(update_fields=RESTART_FIELDS)
        _enqueue_converge(instance)
    return instance


def instance_change_plan(*, instance: Instance, plan) -> Instance:
    """Move an instance to `plan` (the user's plan changed): limits change live, and the engine's
    platform file gets the new trading-pair cap."""
    with transaction.atomic():
        instance = instance_locked(instance)
        previous = instance.plan.code
        instance.plan = plan
        # Autoscaled limits belong to the old plan: the new plan's limits apply.
        instance.cpu_limit_scaled = instance.memory_limit_mb_scaled = None
        instance.save(update_fields=["plan", "cpu_limit_scaled", "memory_limit_mb_scaled"])
        instance_event_record(
            instance=instance, kind=K.PLAN_CHANGED, from_status=instance.status, plan=plan.code, previous_plan=previous
        )
        enqueue_on_commit(tasks.apply_limits, instance.instance_id)
    return instance


def instance_delete(*, instance: Instance, actor=None) -> Instance:
    """Stop gracefully and remove the container; the data volume is kept for the retention period."""
    with transaction.atomic():
        instance = instance_locked(instance)
        if instance.desired_state == D.DELETED:
            return instance
        instance.desired_state = D.DELETED
        instance.data_retained_until = timezone.now() + timedelta(days=settings.QM_DATA_RETENTION_DAYS)
        status_set(instance, S.DELETING, kind=K.DELETE_REQUESTED, actor=actor)
        instance.save(update_fields=["desired_state", "data_retained_until", *STATUS_FIELDS])
        _enqueue_converge(instance)
    return instance


def instance_migrate(*, instance: Instance, region: str, actor=None) -> Instance:
    """Ask for the instance to move to `region` (same id, URL, config, secrets and data); a worker
    carries it out (instance_migrate_run) and `migration` shows its progress or why it failed."""
    _valid_region(region)
    with transaction.atomic():
        instance = instance_locked(instance)
        problem = None
        if region == instance.region:
            problem = ("already_there", f"{instance.instance_id} already runs in region {region}.")
        elif instance.migration.get("step") in MIGRATION_ACTIVE:
            problem = (
                "migration_in_progress",
                f"{instance.instance_id} is already moving to {instance.migration['to']}.",
            )
        elif instance.status not in (S.RUNNING, S.STOPPED) or instance.desired_state == D.DELETED:
            problem = ("not_movable", f"{instance.instance_id} is {instance.status}: it moves when running or stopped.")
        if problem:
            raise ServiceError(code=problem[0], message=problem[1], status=409, details={"status": instance.status})
        instance.migration = {"to": region, "from": instance.region, "step": "queued", "error": ""}
        instance.save(update_fields=["migration"])
        instance_event_record(instance=instance, kind=K.MIGRATION_REQUESTED, actor=actor, to=region)
        enqueue_on_commit(tasks.migrate, instance.instance_id)
    return instance
