"""Thin Celery tasks: load an id, call a service. Idempotent and safe to retry. Queued through
quantmesh.tasks.enqueue_on_commit."""

from __future__ import annotations

from celery import shared_task

from quantmesh.metrics import record_reconcile
from quantmesh.outages import OUTAGE_ERRORS

from . import services, trading
from .services import autoscaling, domains
from .services import reconcile as reconciling

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
def platform_refresh(instance_id: str) -> bool:
    return services.instance_platform_refresh(instance_id=instance_id)


@shared_task(acks_late=True, autoretry_for=RETRIED, retry_backoff=2, max_retries=5)
def migrate(instance_id: str) -> str | None:
    instance = services.instance_migrate_run(instance_id=instance_id)
    return instance.migration.get("step", "done") if instance else None


@shared_task
def reconcile() -> dict:
    report = reconciling.reconcile_pass()
    record_reconcile(report)
    return report.as_dict()


@shared_task
def domains_recheck() -> int:
    return domains.domains_recheck()


@shared_task(acks_late=True, autoretry_for=RETRIED, retry_backoff=2, max_retries=5)
def domain_check(domain_id: int) -> None:
    domains.domain_check(domain_id=domain_id)


@shared_task
def autoscale() -> int:
    return autoscaling.autoscale_pass()


@shared_task(expires=30)
def sample_engines() -> int:
    return trading.engines_sample()
