from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from quantmesh.api.serializers import StrictInputSerializer


class LoginInputSerializer(StrictInputSerializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=settings.QM_MAX_FIELD_LENGTH, trim_whitespace=False)
    otp = serializers.CharField(max_length=32, required=False, allow_blank=True, allow_null=True)


class TokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()


class TokenCreateInputSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    expires_in_days = serializers.IntegerField(min_value=1, max_value=365, required=False)


class TokenCreatedOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    token = serializers.CharField(help_text="Shown only once.")
    prefix = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()


class TokenListOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    current = serializers.SerializerMethodField()

    def get_current(self, token) -> bool:
        return token.pk == self.context.get("current_token_id")


class MeOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    full_name = serializers.CharField()
    two_factor_enabled = serializers.BooleanField()
    date_joined = serializers.DateTimeField()
    plan = serializers.CharField(allow_null=True)
