"""Strategy advisor runs: a background backtest of candidate strategies on an instance's market
data, with its progress and its report kept."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AdviceRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    class Source(models.TextChoices):
        EXCHANGE = "exchange", _("Exchange candles")
        PAPER = "paper", _("Paper exchange price path")
        UPLOAD = "upload", _("Uploaded CSV")

    run_id = models.CharField(max_length=40, unique=True)
    instance = models.ForeignKey("instances.Instance", on_delete=models.CASCADE, related_name="advice_runs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # Empty until known: the engine says whether its candles came from the exchange or the paper path.
    source = models.CharField(max_length=16, choices=Source.choices, blank=True)
    # {"symbol", "limit", "seed", "train_fraction", "timeframe"}
    params = models.JSONField(default=dict)
    uploaded_csv = models.TextField(blank=True, help_text="The customer's candles when they uploaded them.")
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    # AdviceReport.to_dict() of quantmesh_engine.advisor, plus the candles' price path for the chart.
    report = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    applied_candidate = models.PositiveIntegerField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["instance", "-created_at"])]

    def __str__(self) -> str:
        return self.run_id

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)
