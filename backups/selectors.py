from __future__ import annotations

from django.db.models import QuerySet

from instances.models import Instance

from .models import Backup


def backup_instance_get(*, owner, instance_id: str) -> Instance | None:
    """The owner's instance, deleted ones included: their backups outlive them for the retention period."""
    return Instance.objects.filter(owner=owner, instance_id=instance_id).select_related("plan").first()


def backup_list(*, instance: Instance) -> QuerySet[Backup]:
    return Backup.objects.filter(instance=instance).order_by("-created_at", "-id")


def backup_get(*, instance: Instance, backup_id: str) -> Backup | None:
    return backup_list(instance=instance).filter(backup_id=backup_id).first()
