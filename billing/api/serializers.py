from __future__ import annotations

from rest_framework import serializers

from quantmesh.api.serializers import StrictInputSerializer


class PlanOutputSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    name_zh = serializers.CharField()
    currency = serializers.CharField(help_text="ISO 4217, lower case (Stripe's).")
    amount_monthly = serializers.IntegerField(
        source="price_monthly_cents", help_text="Price per month in the currency's minor unit (cents; yen for JPY)."
    )
    amount_yearly = serializers.IntegerField(
        source="price_yearly_cents", help_text="Price per year (discounted) in the currency's minor unit."
    )
    price_monthly = serializers.FloatField(
        help_text="The manual's price: per month in whole currency units (49 for $49), for display; "
        "compute with amount_monthly."
    )
    price_yearly = serializers.FloatField(help_text="Per year in whole currency units, for display; see amount_yearly.")
    cpu_limit = serializers.FloatField(help_text="CPU cores per instance.")
    memory_limit = serializers.IntegerField(source="memory_limit_mb", help_text="Memory per instance, MB.")
    max_trading_pairs = serializers.IntegerField(allow_null=True, help_text="null: unlimited.")
    max_instances = serializers.IntegerField(allow_null=True, help_text="null: unlimited.")
    features = serializers.ListField(child=serializers.CharField())


class SubscriptionCreateInputSerializer(StrictInputSerializer):
    plan = serializers.CharField(max_length=32)
    interval = serializers.ChoiceField(choices=["month", "year"], default="month")


class SubscriptionUpdatePlanInputSerializer(StrictInputSerializer):
    new_plan = serializers.CharField(max_length=32)
    interval = serializers.ChoiceField(
        choices=["month", "year"], required=False, help_text="Switch monthly ↔ yearly; default: keep the current one."
    )


class SubscriptionCancelInputSerializer(StrictInputSerializer):
    immediately = serializers.BooleanField()


class LimitsOutputSerializer(serializers.Serializer):
    max_instances = serializers.IntegerField(allow_null=True)
    cpu_limit = serializers.FloatField()
    memory_limit = serializers.IntegerField()
    max_trading_pairs = serializers.IntegerField(allow_null=True)
    paper_only = serializers.BooleanField()


class PendingChangeOutputSerializer(serializers.Serializer):
    plan = serializers.CharField()
    interval = serializers.CharField()
    effective = serializers.CharField(help_text="when_paid (an upgrade: pay invoice_url) or period_end (a downgrade)")
    invoice_url = serializers.URLField(allow_null=True)


class SubscriptionOutputSerializer(serializers.Serializer):
    plan = serializers.CharField(allow_null=True)
    status = serializers.CharField(help_text="active, trialing, past_due, canceled, or none")
    interval = serializers.CharField(allow_null=True)
    provider = serializers.CharField(allow_null=True, help_text="stripe, or local (no payment: development only)")
    current_period_end = serializers.DateTimeField(allow_null=True)
    cancel_at_period_end = serializers.BooleanField()
    payment_grace_ends_at = serializers.DateTimeField(
        allow_null=True, help_text="After a failed payment: instances stop at this time unless paid."
    )
    trial = serializers.BooleanField()
    trial_ends_at = serializers.DateTimeField(allow_null=True)
    limits = LimitsOutputSerializer(allow_null=True)
    pending_change = PendingChangeOutputSerializer(
        allow_null=True, help_text="A change asked for and not in force yet (null: none)."
    )


class SubscriptionCreateOutputSerializer(SubscriptionOutputSerializer):
    checkout_url = serializers.URLField(
        allow_null=True, help_text="With Stripe: pay here; the plan starts once the payment succeeds."
    )


class InvoiceOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    number = serializers.CharField()
    created = serializers.DateTimeField()
    status = serializers.CharField()
    currency = serializers.CharField(help_text="ISO 4217, lower case.")
    amount_due = serializers.IntegerField(help_text="In the currency's minor unit (cents; yen for JPY).")
    amount_paid = serializers.IntegerField(help_text="In the currency's minor unit.")
    total = serializers.IntegerField(help_text="In the currency's minor unit, tax included.")
    tax = serializers.IntegerField(help_text="Tax (Stripe Tax) in the currency's minor unit.")
    url = serializers.CharField(help_text="Stripe's hosted invoice page.")
    pdf = serializers.CharField(help_text="The invoice as a PDF.")
