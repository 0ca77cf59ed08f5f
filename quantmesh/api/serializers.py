"""Base serializers shared by every app's API."""

from __future__ import annotations

from rest_framework import serializers


class StrictInputSerializer(serializers.Serializer):
    """Input serializer that rejects fields it does not know, naming them."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Expected a JSON object."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. not_found, invalid_request.")
    message = serializers.CharField(help_text="A sentence naming the problem.")
    details = serializers.DictField(help_text="Per-field errors or facts about the problem.")


class ErrorSerializer(serializers.Serializer):
    """Every API error: {"error": {"code", "message", "details"}}."""

    error = ErrorDetailSerializer()
