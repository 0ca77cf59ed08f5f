"""Every state change of an instance.

The API (and the console, admin and tasks) only call these. Requests change the desired
state and hand the real work to `instance_converge`, which runs in a Celery task after the
request's transaction commits and drives the runtime towards the desired state.
"""

from __future__ import annotations

import logging
import secrets
import string
import time
from datetime import timedelta

import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.selectors import entitlements_for, plan_get
from quantmesh.crypto import decrypt, encrypt
from quantmesh.errors import ServiceError

from . import engine_client
from .events import instance_event_record
from .locks import converge_lock
from .models import Instance
from .runtime import get_backend
from .runtime.base import BackendError, InstanceSpec, RuntimeState, RuntimeStatus
from .signals import data_changing

logger = logging.getLogger(__name__)
S = Instance.Status
D = Instance.Desired
SLUG_ALPHABET = string.ascii_lowercase + string.digits


def _new_slug() -> str:
    return "".join(secrets.choice(SLUG_ALPHABET) for _ in range(6))


def _enqueue_converge(instance: Instance) -> None:
    from .tasks import converge

    instance_id = instance.instance_id
    transaction.on_commit(lambda: converge.delay(instance_id))


def _set_status(instance: Instance, status: str, *, kind: str, actor=None, **detail) -> None:
    """Change the observed status, stamp the times, audit it. Caller saves and holds the transaction."""
    previous = instance.status
    now = timezone.now()
    instance.status = status
    instance.status_changed_at = now
    if status == S.RUNNING:
        instance.started_at = now
    elif status == S.STOPPED:
        instance.stopped_at = now
    elif status == S.DELETED:
        instance.deleted_at = now
    instance_event_record(instance=instance, kind=kind, actor=actor, from_status=previous, **detail)


# --- requests (API, console, admin) ----------------------------------------------------------


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
            instance_event_record(instance=instance, kind="created", actor=owner, plan=plan.code, region=region)
            _enqueue_converge(instance)
    except IntegrityError:
        # The same idempotency key raced us: the other request's instance is the answer.
        if idempotency_key:
            return Instance.objects.get(owner=owner, idempotency_key=idempotency_key)
        raise
    return instance


def _locked(instance: Instance) -> Instance:
    return Instance.objects.select_for_update().get(pk=instance.pk)


def instance_stop(*, instance: Instance, actor=None, reason: str = "", kind: str = "stop_requested") -> Instance:
    """Stop gracefully; stopping a stopped instance changes nothing and answers its state."""
    with transaction.atomic():
        instance = _locked(instance)
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


def _live_instances(owner):
    return (
        Instance.objects.filter(owner=owner)
        .exclude(status__in=[S.DELETED, S.DELETING])
        .select_related("plan")
        .order_by("created_at", "pk")
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
        live = list(_live_instances(owner))
        if rights.plan is not None:
            for instance in live:
                above = instance.plan.tier > rights.plan.tier
                if instance.plan_id != rights.plan.pk and (above or follow_plan):
                    instance_change_plan(instance=instance, plan=rights.plan)
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
            instance_stop(instance=instance, reason=why, kind="stopped_by_plan")
            stopped.append(instance.instance_id)
        _domains_follow_plan(live, routed=rights.has_feature("custom_domain"), reason=reason)
    return stopped


def _domains_follow_plan(live: list[Instance], *, routed: bool, reason: str) -> None:
    from .models import CustomDomain

    changing = CustomDomain.objects.filter(instance__in=live, suspended_at__isnull=not routed).select_related(
        "instance"
    )
    for custom in changing:
        custom.suspended_at = None if routed else timezone.now()
        custom.save(update_fields=["suspended_at"])
        instance_event_record(
            instance=custom.instance,
            kind="domain_routed" if routed else "domain_unrouted",
            domain=custom.domain,
            reason=f"{custom.domain}: custom domains are "
            + (
                "included in your plan again"
                if routed
                else f"not included in your plan ({reason}); it is no longer routed"
            ),
        )


def _require_room_to_run(instance: Instance) -> None:
    """Refuse (403, naming the limit) to run an instance beyond the owner's plan. Caller holds the owner lock."""
    rights = entitlements_for(instance.owner)
    if rights.plan is None:
        _require_plan(instance.owner)
    others = _live_instances(instance.owner).filter(desired_state=D.RUNNING).exclude(pk=instance.pk).count()
    if rights.max_instances is not None and others >= rights.max_instances:
        raise ServiceError(
            code="instance_limit_reached",
            message=f"Your {rights.plan.name} plan allows {rights.max_instances} running instance(s) and "
            f"{others} already run: stop one or upgrade.",
            status=403,
            details={"limit": rights.max_instances, "running": others, "plan": rights.plan.code},
        )


def instance_start(*, instance: Instance, actor=None) -> Instance:
    _require_plan(instance.owner)
    instances_enforce_plan(owner=instance.owner, reason="start")
    with transaction.atomic():
        _lock_owner(instance.owner)
        instance = _locked(instance)
        if instance.status in (S.DELETING, S.DELETED):
            raise ServiceError(code="instance_deleted", message="This instance is being deleted.", status=409)
        if instance.desired_state == D.RUNNING and instance.status != S.FAILED:
            return instance
        _require_room_to_run(instance)
        instance.desired_state = D.RUNNING
        instance.restart_count = 0
        instance.next_restart_at = None
        _set_status(instance, S.PROVISIONING, kind="start_requested", actor=actor)
        instance.save()
        _enqueue_converge(instance)
    return instance


def instance_restart(*, instance: Instance, actor=None) -> Instance:
    _require_plan(instance.owner)
    instances_enforce_plan(owner=instance.owner, reason="restart")
    with transaction.atomic():
        _lock_owner(instance.owner)
        instance = _locked(instance)
        if instance.status in (S.DELETING, S.DELETED):
            raise ServiceError(code="instance_deleted", message="This instance is being deleted.", status=409)
        _require_room_to_run(instance)
        instance.desired_state = D.RUNNING
        instance.restart_count = 0
        instance.next_restart_at = None
        _set_status(instance, S.RESTARTING, kind="restart_requested", actor=actor)
        instance.save()
        _enqueue_converge(instance)
    return instance


def instance_change_plan(*, instance: Instance, plan) -> Instance:
    """Move an instance to `plan` (the user's plan changed): limits change live, and the engine's
    platform file gets the new trading-pair cap."""
    with transaction.atomic():
        instance = _locked(instance)
        previous = instance.plan.code
        instance.plan = plan
        # Autoscaled limits belong to the old plan: the new plan's limits apply.
        instance.cpu_limit_scaled = instance.memory_limit_mb_scaled = None
        instance.save(update_fields=["plan", "cpu_limit_scaled", "memory_limit_mb_scaled"])
        instance_event_record(
            instance=instance, kind="plan_changed", from_status=instance.status, plan=plan.code, previous_plan=previous
        )
        instance_id = instance.instance_id
        transaction.on_commit(lambda: _apply_limits_task(instance_id))
    return instance


def _apply_limits_task(instance_id: str) -> None:
    from .tasks import apply_limits

    apply_limits.delay(instance_id)


def instance_apply_limits(*, instance_id: str) -> None:
    """Idempotent: make the runtime unit's limits and platform file match the instance's plan."""
    instance = Instance.objects.select_related("plan").filter(instance_id=instance_id).first()
    if instance is None or instance.status in (S.DELETED, S.DELETING):
        return
    backend = get_backend()
    if backend.status(instance_id).state == RuntimeState.MISSING:
        return  # created with the current plan when it next starts
    data_changing.send(sender=Instance, instance=instance, reason="plan_change")
    backend.write_files(instance_id, instance_spec(instance).files)  # the new plan's platform.yaml
    backend.update_limits(instance_id, instance.cpu_limit, instance.memory_limit_mb)


def instance_delete(*, instance: Instance, actor=None) -> Instance:
    """Stop gracefully and remove the container; the data volume is kept for the retention period."""
    with transaction.atomic():
        instance = _locked(instance)
        if instance.desired_state == D.DELETED:
            return instance
        instance.desired_state = D.DELETED
        instance.data_retained_until = timezone.now() + timedelta(days=settings.QM_DATA_RETENTION_DAYS)
        _set_status(instance, S.DELETING, kind="delete_requested", actor=actor)
        instance.save()
        _enqueue_converge(instance)
    return instance


def instance_migrate(*, instance: Instance, region: str, actor=None) -> Instance:
    """Ask for the instance to move to `region` (same id, URL, config, secrets and data); a worker
    carries it out (instance_migrate_run) and `migration` shows its progress or why it failed."""
    _valid_region(region)
    with transaction.atomic():
        instance = _locked(instance)
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
        instance_event_record(instance=instance, kind="migration_requested", actor=actor, to=region)
        transaction.on_commit(lambda: _migrate_task().delay(instance.instance_id))
    return instance


MIGRATION_ACTIVE = {"queued", "backup", "moving"}


def _migrate_task():
    from .tasks import migrate

    return migrate


def _migration_step(instance: Instance, step: str, **detail) -> None:
    instance.migration = {**instance.migration, "step": step, **detail}
    Instance.objects.filter(pk=instance.pk).update(migration=instance.migration)


def instance_migrate_run(*, instance_id: str) -> Instance | None:
    """Move the instance: a consistent backup first (kept as a restore point), then the backend
    stops it, copies its data to a node of the target region, starts it there and removes the old
    copy once the new one runs. A failure leaves it running where it was, with the reason."""
    with converge_lock(instance_id, timeout=settings.QM_PROVISION_TIMEOUT_SECONDS * 4):
        instance = Instance.objects.select_related("plan").filter(instance_id=instance_id).first()
        if instance is None or instance.migration.get("step") not in MIGRATION_ACTIVE:
            return instance  # a retried task after the work was done
        target = instance.migration["to"]
        backend = get_backend()
        try:
            _migration_step(instance, "backup")
            data_changing.send(sender=Instance, instance=instance, reason="migrate")
            _migration_step(instance, "moving")
            health: list = []

            def answered() -> str | None:  # the engine's health check, before the old copy goes
                health[:] = wait_up(instance, backend)
                return health[1]

            backend.move(instance_id, target, ready=answered if instance.desired_state == D.RUNNING else None)
            if health:
                instance.healthy = health[0]
        except BackendError as error:
            _migration_step(instance, "failed", error=str(error)[:300])
            instance_event_record(instance=instance, kind="migration_failed", to=target, reason=str(error)[:300])
            return instance
        source = instance.region
        instance.region = target
        instance.migration = {}
        instance.save(update_fields=["region", "migration", "healthy"])
        instance_event_record(instance=instance, kind="migrated", **{"from": source, "to": target})
        return instance


# --- the worker side ---------------------------------------------------------------------------


def instance_secrets_key(instance: Instance) -> str:
    """The Fernet key the engine keeps the exchange keys under on its volume (made once, kept
    encrypted under the portal's key list)."""
    if not instance.secrets_key_encrypted:
        from cryptography.fernet import Fernet

        instance.secrets_key_encrypted = encrypt(Fernet.generate_key().decode())
        Instance.objects.filter(pk=instance.pk, secrets_key_encrypted="").update(
            secrets_key_encrypted=instance.secrets_key_encrypted
        )
        instance.secrets_key_encrypted = Instance.objects.values_list("secrets_key_encrypted", flat=True).get(
            pk=instance.pk
        )  # a concurrent converge may have won: everyone uses the stored one
    return decrypt(instance.secrets_key_encrypted)


def instance_secrets_reencrypt() -> int:
    """Key rotation: every instance's proxy secret and secrets key again under the first key of the
    portal's list. Returns how many instances were rewritten."""
    from quantmesh.crypto import reencrypt

    count = 0
    for instance in Instance.objects.only("pk", "proxy_secret_encrypted", "secrets_key_encrypted").iterator():
        sealed = instance.secrets_key_encrypted
        fields = {
            "proxy_secret_encrypted": reencrypt(instance.proxy_secret_encrypted),
            "secrets_key_encrypted": reencrypt(sealed) if sealed else "",
        }
        count += Instance.objects.filter(
            pk=instance.pk,
            proxy_secret_encrypted=instance.proxy_secret_encrypted,
            secrets_key_encrypted=instance.secrets_key_encrypted,
        ).update(**fields)
    return count


def instance_spec(instance: Instance) -> InstanceSpec:
    plan = instance.plan
    platform = {
        "instance_id": instance.instance_id,
        "owner": instance.owner_id,
        "max_trading_pairs": plan.max_trading_pairs,
        "paper_only": entitlements_for(instance.owner).paper_only,
        "console_url": f"{settings.QM_PUBLIC_URL}/instances/{instance.instance_id}",
    }
    # Handed over outside the volume (tmpfs or Docker secret), never written onto it.
    run_keys = {
        "proxy_secret": decrypt(instance.proxy_secret_encrypted),
        "secrets_key": instance_secrets_key(instance),
    }
    return InstanceSpec(
        instance_id=instance.instance_id,
        owner_id=instance.owner_id,
        image=instance.image,
        cpu_limit=instance.cpu_limit,
        memory_limit_mb=instance.memory_limit_mb,
        pids_limit=plan.pids_limit,
        files={"platform.yaml": yaml.safe_dump(platform).encode()},
        run_keys=yaml.safe_dump(run_keys).encode(),
        region=instance.region,
    )


def instance_mark(instance: Instance, status: str | None = None, *, kind: str = "", **detail) -> None:
    """Record what the worker found or did: the status (with its audit event), keeping the desired state."""
    with transaction.atomic():
        current = _locked(instance)
        # Keep what a request changed meanwhile (desired state); the runtime facts are ours.
        instance.desired_state = current.desired_state
        if status is not None and status != current.status:
            instance.status = current.status
            _set_status(instance, status, kind=kind, **detail)
        instance.save()


def failure_reason(status: RuntimeStatus) -> str:
    if status.error:
        return status.error
    if status.oom_killed:
        return "OOM-killed: the engine used more memory than the plan allows"
    if status.exit_code is not None:
        return f"exited with code {status.exit_code}"
    return "stopped unexpectedly"


def wait_up(instance: Instance, backend) -> tuple[bool | None, str | None]:
    """Wait until the engine answers /healthz: (healthy, None), or (None, why it never came up).

    An engine that answers but is unhealthy (say, a config error) is up: its customer must reach
    its page to fix the config, so it counts as running, marked unhealthy.
    """
    deadline = time.monotonic() + settings.QM_PROVISION_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        observed = backend.status(instance.instance_id)
        if observed.state not in (RuntimeState.RUNNING, RuntimeState.CREATED, RuntimeState.RESTARTING):
            return None, failure_reason(observed)
        if observed.state == RuntimeState.RUNNING:
            healthy = engine_client.probe(instance, backend=backend)
            if healthy is not None:
                return healthy, None
        time.sleep(0.05)
    return None, f"the engine did not answer within {settings.QM_PROVISION_TIMEOUT_SECONDS:.0f} s"


def instance_converge(*, instance_id: str) -> Instance | None:
    """Drive one instance to its desired state. Idempotent: safe to run twice or after a crash."""
    with converge_lock(instance_id, timeout=settings.QM_PROVISION_TIMEOUT_SECONDS + 30):
        for _ in range(3):  # a request may change the desired state while we work; follow it
            instance = Instance.objects.select_related("plan").filter(instance_id=instance_id).first()
            if instance is None or instance.status == S.DELETED:
                return instance
            desired = instance.desired_state
            _converge_once(instance)
            instance.refresh_from_db()
            if instance.desired_state == desired:
                return instance
        return instance


def _converge_once(instance: Instance) -> None:
    backend = get_backend()
    observed = backend.status(instance.instance_id)
    if instance.desired_state == D.DELETED:
        if observed.state != RuntimeState.MISSING:
            data_changing.send(sender=Instance, instance=instance, reason="delete")
            backend.stop(instance.instance_id, timeout=settings.QM_STOP_TIMEOUT_SECONDS)
            backend.remove(instance.instance_id, keep_data=True)
        instance.healthy = None
        instance_mark(instance, S.DELETED, kind="deleted")
        return
    if instance.desired_state == D.STOPPED:
        if observed.state in (RuntimeState.RUNNING, RuntimeState.RESTARTING):
            backend.stop(instance.instance_id, timeout=settings.QM_STOP_TIMEOUT_SECONDS)
        instance.healthy = None
        instance_mark(instance, S.STOPPED, kind="stopped")
        return
    # Desired: running.
    if instance.status == S.FAILED:
        return  # a crash loop waits for the customer to start it again
    try:
        if observed.state == RuntimeState.MISSING:
            backend.create(instance_spec(instance))
            backend.start(instance.instance_id)
        elif instance.status == S.RESTARTING and observed.state == RuntimeState.RUNNING:
            backend.restart(instance.instance_id)
        elif observed.state != RuntimeState.RUNNING:
            backend.create(instance_spec(instance))  # the run keys live on a tmpfs: a reboot loses them
            backend.start(instance.instance_id)
    except BackendError as error:  # e.g. the image is missing: no retry will fix that by itself
        healthy, problem = None, str(error)
    else:
        healthy, problem = wait_up(instance, backend)
    if problem is None:
        instance.healthy = healthy
        instance_mark(instance, S.RUNNING, kind="running")
        return
    final = backend.status(instance.instance_id)
    instance.healthy = False
    instance.last_exit_code = final.exit_code
    instance.last_failure_reason = problem
    instance.last_failure_at = timezone.now()
    instance_mark(instance, S.FAILED, kind="failed", reason=problem)
