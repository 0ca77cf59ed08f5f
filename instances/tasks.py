"""Thin Celery tasks: load an id, call a service. Idempotent and safe to retry."""

from __future__ import annotations

from celery import shared_task

from quantmesh.metrics import record_reconcile
from quantmesh.outages import OUTAGE_ERRORS

from . import reconcile as reconcile_module
from . import services

# A dependency that is briefly down (database, Redis, Docker) is waited out, not left half-done.
RETRIED = (TimeoutError, *OUTAGE_ERRORS)


@shared_task(acks_late=True, autoretry_for=RETRIED, retry_backoff=2, max_retries=5)
def converge(instance_id: str) -> str | None:
    instance = services.instance_converge(instance_id=instance_id)
    return instance.status if instance else None


@shared_task(acks_late=True, autoretry_for=RETRIED, retry_backoff=2, max_retries=5)
def apply_limits(instance_id: str) -> None:
    services.instance_apply_limits(instance_id=instance_id)


@shared_task(acks_late=True, autoretry_for=RETRIED, retry_backoff=2, max_retries=5)
def migrate(instance_id: str) -> str | None:
    instance = services.instance_migrate_run(instance_id=instance_id)
    return instance.migration.get("step", "done") if instance else None


@shared_task
def reconcile() -> dict:
    report = reconcile_module.reconcile_pass()
    record_reconcile(report)
    return report.as_dict()


@shared_task
def domains_recheck() -> int:
    from .domains import domains_recheck as recheck

    return recheck()


@shared_task(acks_late=True, autoretry_for=RETRIED, retry_backoff=2, max_retries=5)
def domain_check(domain_id: int) -> None:
    from .domains import domain_check as check

    check(domain_id=domain_id)


@shared_task
def autoscale() -> int:
    from .autoscaling import autoscale_pass

    return autoscale_pass()


@shared_task(expires=30)
def sample_engines() -> int:
    from .trading import engines_sample

    return engines_sample()
