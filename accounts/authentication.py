"""`Authorization: Bearer <token>` for every API call."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import authentication, exceptions

from . import auth_cache
from .models import ApiToken, SecurityEvent
from .requests import client_ip
from .selectors import user_has_two_factor
from .services import hash_token, security_event_record
from .throttling import record_token_failure, token_guessing_blocked

# Writing last_used_at on every request would turn each read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_authenticate(raw: str, *, count=None):
    """The (user, token) a raw bearer token belongs to, or AuthenticationFailed. `count`: see
    auth_cache.token_get."""
    key_hash = hash_token(raw)
    token = auth_cache.token_get(key_hash, count=count)
    if token is None or token.revoked_at is not None:
        raise exceptions.AuthenticationFailed("Invalid or revoked token.")
    now = timezone.now()
    if token.expires_at <= now:
        raise exceptions.AuthenticationFailed("The token has expired; log in again for a new one.")
    if not token.user.is_active:
        raise exceptions.AuthenticationFailed("This account is disabled.")
    stale = token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION
    if stale and auth_cache.last_used_claim(key_hash, now, resolution=LAST_USED_RESOLUTION):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        auth_cache.last_used_noted(key_hash, now)
    return token.user, token


def bearer_authenticate(raw: str, *, ip: str | None, request=None, count=None):
    """token_authenticate behind the per-address guessing throttle, for HTTP, websockets, instance
    hosts and forward-auth alike. Only unknown tokens count, and only they are refused once the
    address reached the limit: a valid token always works, so customers behind one NAT address
    cannot lock each other out. The failure that reaches the limit is audited once."""
    try:
        return token_authenticate(raw, count=count)
    except exceptions.AuthenticationFailed:
        wait = token_guessing_blocked(ip=ip)
        if wait:
            raise exceptions.Throttled(wait=wait, detail="Too many invalid tokens from your address.") from None
        if record_token_failure(ip=ip):
            security_event_record(
                kind=SecurityEvent.Kind.TOKEN_GUESSING, request=request, ip=ip, limit=settings.QM_TOKEN_GUESS_LIMIT
            )
        raise


def _authentication_count(request):
    """The view's throttle that may count a request during authentication (one that has
    `authentication_count(user_id)`, e.g. quantmesh.api.throttles.PerUserRateThrottle), or None."""
    view = (request.parser_context or {}).get("view")
    for throttle_class in getattr(view, "throttle_classes", ()):
        if hasattr(throttle_class, "authentication_count"):
            return throttle_class.authentication_count
    return None


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        raw = raw.strip()
        if not raw or " " in raw:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: expected `Bearer <token>`.")
        return bearer_authenticate(raw, ip=client_ip(request), request=request, count=_authentication_count(request))

    def authenticate_header(self, request):
        return self.keyword


class VerifiedSessionAuthentication(authentication.SessionAuthentication):
    """The console's own calls: the session cookie (with CSRF), once the second factor is passed."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user = request._request.user
        if user_has_two_factor(user) and not user.is_verified():
            return None
        return result
