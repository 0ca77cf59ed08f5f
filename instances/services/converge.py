"""The worker side of an instance's life: drive the runtime towards the desired state (converge),
apply a plan's limits, move to another region, put restored files in place, and record what was
found. Runs in Celery tasks, one instance at a time (converge_lock).

A worker loads the row when it begins and may work on it for a minute; meanwhile requests change
the desired state, the plan and autoscaled limits. So it writes only the columns it owns (the
observed status, health and failure), on the row locked as committed now (instance_mark).
"""

from __future__ import annotations

import time

import yaml
from cryptography.fernet import Fernet
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.selectors import entitlements_for
from quantmesh.crypto import decrypt, encrypt, reencrypt

from .. import engine_client
from ..events import instance_event_record
from ..locks import converge_lock
from ..models import Instance
from ..runtime import get_backend
from ..runtime.base import BackendError, InstanceSpec, RuntimeState, RuntimeStatus
from ..signals import data_changing
from .state import MIGRATION_ACTIVE, STATUS_FIELDS, D, K, S, instance_locked, status_set

# What a worker finds out about the engine; the rest of the row belongs to requests.
OBSERVED_FIELDS = ["healthy", "last_exit_code", "last_failure_reason", "last_failure_at"]


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


def instance_platform_refresh(*, instance_id: str) -> bool:
    """Idempotent: rewrite the engine's platform file when the owner's entitlements changed what it
    says while the instance's plan stayed (a trial subscribed, the AI strategy gained or lost). The
    engine reads it at its next config load or write. True when the file was rewritten."""
    instance = Instance.objects.select_related("plan", "owner").filter(instance_id=instance_id).first()
    if instance is None or instance.status in (S.DELETED, S.DELETING):
        return False
    backend = get_backend()
    if backend.status(instance_id).state == RuntimeState.MISSING:
        return False  # written with the current entitlements when it next starts
    files = instance_spec(instance).files
    if backend.read_file(instance_id, "platform.yaml") == files["platform.yaml"]:
        return False
    backend.write_files(instance_id, files)
    return True


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
            instance_event_record(instance=instance, kind=K.MIGRATION_FAILED, to=target, reason=str(error)[:300])
            return instance
        source = instance.region
        instance.region = target
        instance.migration = {}
        instance.save(update_fields=["region", "migration", "healthy"])
        instance_event_record(instance=instance, kind=K.MIGRATED, **{"from": source, "to": target})
        return instance


def instance_secrets_key(instance: Instance) -> str:
    """The Fernet key the engine keeps the exchange keys under on its volume (made once, kept
    encrypted under the portal's key list)."""
    if not instance.secrets_key_encrypted:
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
    rights = entitlements_for(instance.owner)
    platform = {
        "instance_id": instance.instance_id,
        "owner": instance.owner_id,
        "max_trading_pairs": plan.max_trading_pairs,
        "paper_only": rights.paper_only,
        # The engine refuses `strategy.kind: adaptive` without it (and trades the grid instead).
        "adaptive_strategy": rights.has_feature("ai_strategy"),
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
    """Record what the worker found or did: the status (with its audit event) and OBSERVED_FIELDS as
    set on `instance`, written on the row as committed now. What requests changed meanwhile (desired
    state, plan, autoscaled limits) is kept, and `instance` is brought up to date with it."""
    with transaction.atomic():
        current = instance_locked(instance)
        for name in OBSERVED_FIELDS:
            setattr(current, name, getattr(instance, name))
        if status is not None and status != current.status:
            status_set(current, status, kind=kind, **detail)
        current.save(update_fields=[*OBSERVED_FIELDS, *STATUS_FIELDS])
    instance.refresh_from_db()


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
        instance_mark(instance, S.DELETED, kind=K.DELETED)
        return
    if instance.desired_state == D.STOPPED:
        if observed.state in (RuntimeState.RUNNING, RuntimeState.RESTARTING):
            backend.stop(instance.instance_id, timeout=settings.QM_STOP_TIMEOUT_SECONDS)
        instance.healthy = None
        instance_mark(instance, S.STOPPED, kind=K.STOPPED)
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
        instance_mark(instance, S.RUNNING, kind=K.RUNNING)
        return
    final = backend.status(instance.instance_id)
    instance.healthy = False
    instance.last_exit_code = final.exit_code
    instance.last_failure_reason = problem
    instance.last_failure_at = timezone.now()
    instance_mark(instance, S.FAILED, kind=K.FAILED, reason=problem)


def instance_files_restore(*, instance_id: str, files: dict[str, bytes], backup_id: str) -> None:
    """The worker side of a restore (backups hands over the files): stop the engine, write `files`
    onto its volume, start it again if it should run. Idempotent: the same files again."""
    instance = Instance.objects.select_related("plan", "owner").get(instance_id=instance_id)
    backend = get_backend()
    with converge_lock(instance_id, timeout=settings.QM_PROVISION_TIMEOUT_SECONDS * 2):
        instance.refresh_from_db()
        run_after = instance.desired_state == D.RUNNING
        instance_mark(instance, S.RESTARTING, kind=K.RESTORE_STARTED, backup=backup_id)
        backend.create(instance_spec(instance))  # a new target may still be provisioning
        backend.stop(instance_id, settings.QM_STOP_TIMEOUT_SECONDS)
        backend.write_files(instance_id, files)
        if not run_after:
            instance_mark(instance, S.STOPPED, kind=K.RESTORED, backup=backup_id)
            return
        backend.start(instance_id)
        healthy, why = wait_up(instance, backend)
        if why is not None:
            instance_mark(instance, S.FAILED, kind=K.FAILED, reason=f"after restore: {why}")
            return
        instance.healthy = healthy
        instance_mark(instance, S.RUNNING, kind=K.RESTORED, backup=backup_id)
