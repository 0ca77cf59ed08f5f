from __future__ import annotations

from rest_framework import serializers

from alerts.models import AlertKind
from quantmesh.api.serializers import StrictInputSerializer


class AlertSettingsSerializer(serializers.Serializer):
    email_enabled = serializers.BooleanField()
    telegram_enabled = serializers.BooleanField()
    telegram_chat_id = serializers.CharField(max_length=64, allow_blank=True, default="")
    events = serializers.ListField(
        child=serializers.CharField(max_length=32), help_text=f"Alert kinds: {', '.join(AlertKind.values)}"
    )


class AlertSettingsInputSerializer(StrictInputSerializer, AlertSettingsSerializer):
    pass


class AlertOutputSerializer(serializers.Serializer):
    kind = serializers.CharField()
    instance_id = serializers.CharField(source="instance.instance_id", allow_null=True, default=None)
    subject = serializers.CharField()
    message = serializers.CharField()
    channels = serializers.ListField(child=serializers.CharField())
    status = serializers.CharField(help_text="pending, sent or failed")
    created_at = serializers.DateTimeField()
