"""Every state change of accounts: tokens, API login, two-factor devices, the audit trail."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import authenticate
from django.db import transaction
from django.utils import timezone, translation
from django_otp import match_token
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from quantmesh.errors import ServiceError

from . import auth_cache, throttling
from .models import ApiToken, SecurityEvent, User
from .requests import client_ip, user_agent
from .selectors import user_has_two_factor

TOKEN_PREFIX = "qm_"  # noqa: S105 (a public prefix, not a secret)
BACKUP_CODE_COUNT = 10
TOTP_DEVICE_NAME = "Authenticator app"
BACKUP_DEVICE_NAME = "Backup codes"


def security_event_record(
    *, kind: str, user: User | None = None, email: str = "", request=None, ip: str | None = None, **detail
):
    """An audit row; the address comes from the request, or `ip` where there is none (websockets)."""
    return SecurityEvent.objects.create(
        kind=kind,
        user=user,
        email=(email or (user.email if user else ""))[:254],
        ip_address=ip or client_ip(request),
        user_agent=user_agent(request),
        detail=detail,
    )


def user_language_set(*, user: User, language: str) -> None:
    """Remember the language `user` reads the console in; a language the site does not offer is ignored."""
    try:
        code = translation.get_supported_language_variant(language or "")
    except LookupError:
        return
    if user.language != code:
        user.language = code
        user.save(update_fields=["language"])


def hash_token(raw: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast hash is safe and keeps lookups cheap.
    return hashlib.sha256(raw.encode()).hexdigest()


def api_token_create(*, user: User, name: str = "", ttl: timedelta | None = None, request=None) -> tuple[ApiToken, str]:
    """Create a token; the raw value is returned once and never stored."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            key_hash=hash_token(raw),
            prefix=raw[: len(TOKEN_PREFIX) + 6],
            expires_at=timezone.now() + (ttl or settings.QM_TOKEN_TTL),
        )
        security_event_record(
            kind=SecurityEvent.Kind.TOKEN_CREATED, user=user, request=request, token_id=token.pk, name=name
        )
    return token, raw


def api_token_revoke(*, token: ApiToken, request=None) -> ApiToken:
    if token.revoked_at is not None:
        return token
    with transaction.atomic():
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        security_event_record(
            kind=SecurityEvent.Kind.TOKEN_REVOKED, user=token.user, request=request, token_id=token.pk
        )
    return token


def credentials_revoke_all(*, user: User, reason: str, request=None) -> int:
    """A new password ends everything the old one opened: every API token (listed as revoked), every
    console session and instance cookie (Django and the instance host check the session's password
    hash, which no longer matches), and any login lock of the account. Returns the tokens revoked."""
    with transaction.atomic():
        live = ApiToken.objects.select_for_update().filter(user=user, revoked_at__isnull=True)
        token_ids = list(live.values_list("pk", flat=True))
        ApiToken.objects.filter(pk__in=token_ids).update(revoked_at=timezone.now())
        auth_cache.bump_on_commit(user_id=user.pk)  # an update sends no post_save
        security_event_record(
            kind=SecurityEvent.Kind.PASSWORD_CHANGED,
            user=user,
            request=request,
            reason=reason,
            tokens_revoked=token_ids,
        )
    throttling.lift_locks(email=user.email)
    return len(token_ids)


def _blocked_error(blocked: throttling.LoginBlocked) -> ServiceError:
    if blocked.reason == "locked":
        message = f"Too many failed logins for this account; try again in {blocked.retry_after} seconds."
    else:
        message = f"Too many login attempts from this address; try again in {blocked.retry_after} seconds."
    return ServiceError(
        code="rate_limited",
        message=message,
        status=429,
        details={"retry_after": blocked.retry_after},
    )


def login_failure_record(*, email: str, user: User | None, request, reason: str) -> None:
    """Count a failure towards the lock (of this account, from this address) and audit it (and the
    lock, when this one triggers it)."""
    kind = SecurityEvent.Kind.OTP_FAILED if reason == "otp_invalid" else SecurityEvent.Kind.LOGIN_FAILED
    security_event_record(kind=kind, user=user, email=email, request=request, reason=reason)
    if throttling.record_login_failure(ip=client_ip(request), email=email):
        security_event_record(kind=SecurityEvent.Kind.ACCOUNT_LOCKED, user=user, email=email, request=request)


def second_factor_verify(*, user: User, code: str, request=None):
    """The device that accepts a TOTP code or a one-time backup code, or None.

    TOTP codes cannot be replayed (django-otp keeps the last accepted time step) and backup
    codes are consumed.
    """
    device = match_token(user, code.strip().replace(" ", ""))
    if isinstance(device, StaticDevice):
        security_event_record(kind=SecurityEvent.Kind.BACKUP_CODE_USED, user=user, request=request)
    return device


def api_login(*, email: str, password: str, otp: str | None, request) -> tuple[ApiToken, str]:
    email = email.strip().lower()
    try:
        throttling.check_login_allowed(ip=client_ip(request), email=email)
    except throttling.LoginBlocked as blocked:
        security_event_record(
            kind=SecurityEvent.Kind.LOGIN_THROTTLED, email=email, request=request, reason=blocked.reason
        )
        raise _blocked_error(blocked) from None

    user = authenticate(request, username=email, password=password)
    if user is None:
        login_failure_record(email=email, user=None, request=request, reason="invalid_credentials")
        raise ServiceError(code="invalid_credentials", message="E-mail or password is incorrect.", status=401)
    if not _email_verified(user):
        raise ServiceError(
            code="email_unverified",
            message="Confirm your e-mail address first: follow the link in the message we sent you.",
            status=401,
        )
    if user_has_two_factor(user):
        if not otp:
            raise ServiceError(
                code="otp_required",
                message="This account has two-factor authentication: send the 6-digit code as `otp`.",
                status=401,
            )
        if second_factor_verify(user=user, code=otp, request=request) is None:
            login_failure_record(email=email, user=user, request=request, reason="otp_invalid")
            raise ServiceError(
                code="otp_invalid",
                message="The two-factor code is wrong, expired or already used.",
                status=401,
            )
    if user_has_two_factor(user):
        throttling.lift_locks(email=email)  # the second factor proves it is the owner
    else:
        throttling.clear_login_failures(ip=client_ip(request), email=email)
    token, raw = api_token_create(user=user, name="API login", request=request)
    security_event_record(kind=SecurityEvent.Kind.LOGIN_OK, user=user, request=request, via="api")
    return token, raw


def _email_verified(user: User) -> bool:
    if settings.ACCOUNT_EMAIL_VERIFICATION != "mandatory":
        return True
    return EmailAddress.objects.filter(user=user, email__iexact=user.email, verified=True).exists()


def two_factor_enrol_begin(*, user: User) -> TOTPDevice:
    """An unconfirmed TOTP device whose QR code the user scans; reused until confirmed."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
    return device


def _backup_codes_replace(user: User) -> list[str]:
    device, _ = StaticDevice.objects.get_or_create(user=user, name=BACKUP_DEVICE_NAME, defaults={"confirmed": True})
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(BACKUP_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


def two_factor_enrol_confirm(*, user: User, code: str, request=None) -> tuple[TOTPDevice, list[str]]:
    """Confirm the pending device with a code from the app; returns it and fresh backup codes."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        raise ServiceError(code="no_pending_device", message="Start two-factor enrolment first.")
    if not device.verify_token(code.strip().replace(" ", "")):
        raise ServiceError(code="otp_invalid", message="That code does not match; check the time on your phone.")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=True).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _backup_codes_replace(user)
        security_event_record(kind=SecurityEvent.Kind.TWO_FACTOR_ENABLED, user=user, request=request)
    return device, codes


def two_factor_disable(*, user: User, password: str, code: str, request=None) -> None:
    if not user.check_password(password):
        raise ServiceError(code="invalid_password", message="The password is incorrect.", status=400)
    if second_factor_verify(user=user, code=code, request=request) is None:
        raise ServiceError(code="otp_invalid", message="The two-factor code is wrong, expired or already used.")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()
        security_event_record(kind=SecurityEvent.Kind.TWO_FACTOR_DISABLED, user=user, request=request)


def backup_codes_regenerate(*, user: User, code: str, request=None) -> list[str]:
    if second_factor_verify(user=user, code=code, request=request) is None:
        raise ServiceError(code="otp_invalid", message="The two-factor code is wrong, expired or already used.")
    with transaction.atomic():
        codes = _backup_codes_replace(user)
        security_event_record(kind=SecurityEvent.Kind.BACKUP_CODES_GENERATED, user=user, request=request)
    return codes


def demo_user_reset(*, email: str, password: str) -> User:
    """The demo customer (made if missing) with this password and its e-mail verified (manage.py
    create_demo_user); the caller gives it a plan."""
    with transaction.atomic():
        user = User.objects.filter(email=email).first() or User.objects.create_user(email=email)
        user.set_password(password)
        user.save(update_fields=["password"])
        EmailAddress.objects.update_or_create(user=user, email=email, defaults={"verified": True, "primary": True})
    return user
