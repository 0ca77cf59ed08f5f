"""Thin Celery tasks of backups."""

from celery import shared_task

from . import services


@shared_task(acks_late=True, autoretry_for=(TimeoutError,), retry_backoff=2, max_retries=5)
def restore(backup_pk: int, instance_id: str) -> None:
    services.backup_restore_apply(backup_pk=backup_pk, instance_id=instance_id)


@shared_task
def daily() -> int:
    return services.backups_daily()


@shared_task
def prune() -> int:
    return services.backups_prune()
