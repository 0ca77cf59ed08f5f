from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import get_language

from .money import major_units


class Plan(models.Model):
    """A sellable plan and the limits it grants; loaded from billing/catalogue.py."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=64)
    name_zh = models.CharField(max_length=64)
    tier = models.PositiveSmallIntegerField(help_text="Higher tiers include everything lower tiers may do.")
    currency = models.CharField(max_length=3, default="usd")
    # Amounts in the currency's minor unit (cents; whole yen for a zero-decimal currency).
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
    # Set by `manage.py billing_stripe_sync`. Checkout sells these prices; webhooks map any price of
    # the plan's product (whatever its amount or age) back to the plan.
    stripe_product_id = models.CharField(max_length=255, blank=True, db_index=True)
    stripe_price_month_id = models.CharField(max_length=255, blank=True)
    stripe_price_year_id = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["tier"]

    def __str__(self) -> str:
        return self.name

    @property
    def display_name(self) -> str:
        """The plan's name in the viewer's language (the console never shows the code)."""
        return self.name_zh if (get_language() or "").startswith("zh") else self.name

    @property
    def price_monthly(self):
        return major_units(self.price_monthly_cents, self.currency)

    @property
    def price_yearly(self):
        return major_units(self.price_yearly_cents, self.currency)

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
    stripe_subscription_id = models.CharField(max_length=255, blank=True, db_index=True)
    # When payment first failed; instances keep running for QM_PAYMENT_GRACE after it.
    past_due_since = models.DateTimeField(null=True, blank=True)
    # A change asked for but not in force yet: an upgrade waiting for its invoice to be paid, or a
    # downgrade (or yearly → monthly) waiting for the paid period to end.
    pending_plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    pending_interval = models.CharField(max_length=8, choices=Interval.choices, blank=True)
    pending_effective = models.CharField(max_length=16, blank=True, help_text="when_paid or period_end")
    pending_invoice_url = models.URLField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user} · {self.plan} ({self.status})"


class BillingEvent(models.Model):
    """Audit trail of every change to what a user pays for, whoever made it (user, Stripe, a job)."""

    class Kind(models.TextChoices):
        SUBSCRIBED = "subscribed", "Subscribed"
        CHECKOUT_STARTED = "checkout_started", "Checkout started"
        PLAN_CHANGED = "plan_changed", "Plan changed"
        CANCEL_SCHEDULED = "cancel_scheduled", "Cancel at period end"
        CANCELED = "canceled", "Canceled"
        PAYMENT_FAILED = "payment_failed", "Payment failed"
        PAYMENT_RECOVERED = "payment_recovered", "Payment recovered"
        SUSPENDED = "suspended", "Instances stopped: no plan"
        REFERRAL_CREDITED = "referral_credited", "Referral credit granted"
        REFERRAL_CLAWED_BACK = "referral_clawed_back", "Referral credit clawed back"
        REFERRAL_REFUSED = "referral_refused", "Referral refused (same person)"
        CHANGE_SCHEDULED = "change_scheduled", "Plan change scheduled"
        PAYMENT_ACTION_REQUIRED = "payment_action_required", "Payment needs the customer's action"
        DUNNING_REMINDER = "dunning_reminder", "Unpaid: reminder sent"
        UNKNOWN_PRICE = "unknown_price", "Subscription on a price no plan sells"
        RECONCILED = "reconciled", "Corrected by the daily reconcile with Stripe"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="billing_events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    source = models.CharField(max_length=16, help_text="user, stripe, or system")
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.user} · {self.kind}"


class ReferralCode(models.Model):
    """Each user's referral link: /r/<code>."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="referral_code")
    code = models.CharField(max_length=16, unique=True)

    def __str__(self) -> str:
        return self.code


class Referral(models.Model):
    """A user who signed up through someone's link; the referrer is credited once, when the
    referred user's first invoice is paid."""

    referrer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="referrals_made")
    referred = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="referred_by")
    created_at = models.DateTimeField(default=timezone.now)
    credit_cents = models.PositiveIntegerField(default=0)
    currency = models.CharField(max_length=3, blank=True)
    credited_at = models.DateTimeField(null=True, blank=True)
    # The Stripe customer balance transaction that carries the credit onto the referrer's next invoice.
    stripe_balance_transaction_id = models.CharField(max_length=255, blank=True)
    credit_invoice_id = models.CharField(max_length=255, blank=True, help_text="The paid invoice that earned it.")
    # A refund or dispute of the referred customer's payment takes the credit back (once).
    clawed_back_at = models.DateTimeField(null=True, blank=True)
    clawback_balance_transaction_id = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return f"{self.referrer} → {self.referred}"
