"""Backups listening to instances: a copy before the data is put at risk."""

from __future__ import annotations

from django.dispatch import receiver

from instances.signals import data_changing

from .models import Backup
from .services import backup_create

KIND_FOR_REASON = {
    "delete": Backup.Kind.BEFORE_DELETE,
    "plan_change": Backup.Kind.BEFORE_PLAN_CHANGE,
    "image_upgrade": Backup.Kind.BEFORE_UPGRADE,
    "migrate": Backup.Kind.BEFORE_MIGRATION,
}


@receiver(data_changing)
def backup_before_change(sender, instance, reason: str, **kwargs) -> None:
    backup_create(instance=instance, kind=KIND_FOR_REASON[reason])
