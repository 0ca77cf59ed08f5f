from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AlertKind(models.TextChoices):
    INSTANCE_DOWN = "instance_down", _("Instance down or crash-looping")
    INSTANCE_UNHEALTHY = "instance_unhealthy", _("Instance not trading (an error, or no heartbeat)")
    RISK_TRIGGERED = "risk_triggered", _("Risk control triggered")
    RESOURCE_HIGH = "resource_high", _("CPU or memory near the plan limit")
    PAYMENT_FAILED = "payment_failed", _("Payment failed")
    BACKUP_FAILED = "backup_failed", _("Backup failed")
    BILLING = "billing", _("Billing: payment reminders, payments to confirm, instances stopped by the plan")


class AlertSettings(models.Model):
    """Where and about what a user wants to be alerted (the manual's 监控告警)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_settings")
    email_enabled = models.BooleanField(default=True)
    telegram_enabled = models.BooleanField(default=False)
    telegram_chat_id = models.CharField(max_length=64, blank=True)
    events = models.JSONField(default=list, help_text="The alert kinds to send; all when the user never chose.")

    def __str__(self) -> str:
        return f"alerts of {self.user}"

    def wants(self, kind: str) -> bool:
        return kind in self.events

    def channels(self) -> list[str]:
        channels = ["email"] if self.email_enabled else []
        if self.telegram_enabled and self.telegram_chat_id:
            channels.append("telegram")
        return channels


class Alert(models.Model):
    """One alert, and what became of it on each channel (sent once per channel, retried on failure)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alerts")
    instance = models.ForeignKey(
        "instances.Instance", null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    kind = models.CharField(max_length=24, choices=AlertKind.choices)
    subject = models.CharField(max_length=200)
    message = models.TextField()
    channels = models.JSONField(default=list)
    delivered = models.JSONField(default=dict, help_text="channel → time it was delivered")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "kind", "instance", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} for {self.user} ({self.status})"
