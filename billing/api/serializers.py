from __future__ import annotations

from rest_framework import serializers


class PlanOutputSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    name_zh = serializers.CharField()
    currency = serializers.CharField()
    price_monthly = serializers.FloatField(help_text="Price per month, in currency units.")
    price_yearly = serializers.FloatField(help_text="Price per year (discounted), in currency units.")
    cpu_limit = serializers.FloatField(help_text="CPU cores per instance.")
    memory_limit = serializers.IntegerField(source="memory_limit_mb", help_text="Memory per instance, MB.")
    max_trading_pairs = serializers.IntegerField(allow_null=True, help_text="null: unlimited.")
    max_instances = serializers.IntegerField(allow_null=True, help_text="null: unlimited.")
    features = serializers.ListField(child=serializers.CharField())
