from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone


class Plan(models.Model):
    """A sellable plan and the limits it grants; loaded from billing/catalogue.py."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=64)
    name_zh = models.CharField(max_length=64)
    tier = models.PositiveSmallIntegerField(help_text="Higher tiers include everything lower tiers may do.")
    currency = models.CharField(max_length=3, default="usd")
    price_monthly_cents = models.PositiveIntegerField()
    price_yearly_cents = models.PositiveIntegerField()
    cpu_limit = models.DecimalField(max_digits=5, decimal_places=2, help_text="CPU cores per instance.")
    memory_limit_mb = models.PositiveIntegerField(help_text="Memory per instance, MiB.")
    pids_limit = models.PositiveIntegerField()
    max_trading_pairs = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: unlimited.")
    max_instances = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: unlimited.")
    features = models.JSONField(default=list, blank=True)
    audience = models.CharField(max_length=100, blank=True)
    audience_zh = models.CharField(max_length=100, blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["tier"]

    def __str__(self) -> str:
        return self.name

    @property
    def price_monthly(self) -> Decimal:
        return Decimal(self.price_monthly_cents) / 100

    @property
    def price_yearly(self) -> Decimal:
        return Decimal(self.price_yearly_cents) / 100

    def includes(self, other: Plan) -> bool:
        return other.tier <= self.tier


class Subscription(models.Model):
    """The plan a user pays for (or trials); billing alone reads it to answer entitlement questions."""

    class Status(models.TextChoices):
        TRIALING = "trialing", "Trialing"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Past due"
        CANCELED = "canceled", "Canceled"

    class Interval(models.TextChoices):
        MONTH = "month", "Monthly"
        YEAR = "year", "Yearly"

    class Provider(models.TextChoices):
        LOCAL = "local", "Local (no payment, development only)"
        STRIPE = "stripe", "Stripe"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscription")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    interval = models.CharField(max_length=8, choices=Interval.choices, default=Interval.MONTH)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    provider = models.CharField(max_length=16, choices=Provider.choices, default=Provider.LOCAL)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user} · {self.plan} ({self.status})"
