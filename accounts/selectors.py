"""Read queries of accounts."""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from django.utils import translation
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import auth_cache
from .models import ApiToken, SecurityEvent, User


def user_has_two_factor(user: User) -> bool:
    return auth_cache.two_factor_get(
        user.pk, lambda: TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    )


def user_language(user: User) -> str:
    """The language to write to `user` in outside a request (alerts, DNS checks): the one stored on
    the account, or the site's default."""
    try:
        return translation.get_supported_language_variant(user.language or settings.LANGUAGE_CODE)
    except LookupError:
        return settings.LANGUAGE_CODE


def backup_codes_remaining(user: User) -> int:
    return StaticToken.objects.filter(device__user=user).count()


def api_token_list(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).order_by("-created_at")


def api_token_get(*, user: User, token_id: int) -> ApiToken | None:
    return ApiToken.objects.filter(user=user, pk=token_id).first()


def security_event_list(*, user: User, limit: int = 50) -> QuerySet[SecurityEvent]:
    return SecurityEvent.objects.filter(user=user).order_by("-created_at")[:limit]
