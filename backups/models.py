from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def _backup_id() -> str:
    return "bk_" + secrets.token_hex(8)


class Backup(models.Model):
    """One backup of an instance's data: the engine's database, its config and (encrypted) secrets."""

    class Kind(models.TextChoices):
        DAILY = "daily", _("Daily")
        MANUAL = "manual", _("On request")
        BEFORE_DELETE = "before_delete", _("Before delete")
        BEFORE_PLAN_CHANGE = "before_plan_change", _("Before plan change")
        BEFORE_UPGRADE = "before_upgrade", _("Before image upgrade")
        BEFORE_RESTORE = "before_restore", _("Before restore")
        BEFORE_MIGRATION = "before_migration", _("Before a move to another region")

    class Status(models.TextChoices):
        OK = "ok", _("OK")
        FAILED = "failed", _("Failed")

    backup_id = models.CharField(max_length=32, unique=True, default=_backup_id)
    instance = models.ForeignKey("instances.Instance", on_delete=models.CASCADE, related_name="backups")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="backups")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    status = models.CharField(max_length=8, choices=Status.choices)
    storage_key = models.CharField(max_length=255, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.backup_id} ({self.instance.instance_id}, {self.kind}, {self.status})"
