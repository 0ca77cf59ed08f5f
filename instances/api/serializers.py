from __future__ import annotations

from rest_framework import serializers

from quantmesh.api.serializers import StrictInputSerializer


class InstanceCreateInputSerializer(StrictInputSerializer):
    plan = serializers.CharField(max_length=32)


class InstanceOutputSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    status = serializers.CharField()
    plan = serializers.CharField(source="plan.code")
    url = serializers.CharField()
    port = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    desired_state = serializers.CharField()
    healthy = serializers.BooleanField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)
    restart_count = serializers.IntegerField()
    last_failure_reason = serializers.CharField(allow_blank=True)
    last_exit_code = serializers.IntegerField(allow_null=True)
    image = serializers.CharField()

    def get_port(self, instance) -> int:
        from django.conf import settings

        return settings.QM_INSTANCE_PORT


class LogsQuerySerializer(StrictInputSerializer):
    lines = serializers.IntegerField(min_value=1, max_value=10000, default=1000)


class LogsOutputSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    lines = serializers.ListField(child=serializers.CharField())


class MetricsOutputSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    cpu_usage = serializers.FloatField(help_text="Fraction of the CPU limit in use.")
    memory_usage = serializers.FloatField(help_text="Fraction of the memory limit in use.")
    cpu_limit = serializers.FloatField(help_text="CPU cores.")
    memory_limit = serializers.IntegerField(help_text="MB.")
    uptime = serializers.IntegerField(help_text="Seconds since the container started.")
    last_active = serializers.DateTimeField(allow_null=True, help_text="The engine's last heartbeat.")
