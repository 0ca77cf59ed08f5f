"""Web logins and logouts (allauth and the admin) land in the audit trail."""

from __future__ import annotations

from allauth.account.signals import user_signed_up
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import Signal, receiver
from django.utils import translation

from . import throttling
from .models import SecurityEvent
from .requests import client_ip
from .services import credentials_revoke_all, security_event_record, user_language_set

# Sent by User.save() when an existing account's password was changed (by any path).
password_changed = Signal()


@receiver(user_logged_in)
def record_web_login(sender, request, user, **kwargs):
    throttling.clear_login_failures(ip=client_ip(request), email=user.email)
    if not user.language:  # accounts older than the stored language get the one they log in with
        remember_request_language(sender, request, user)
    security_event_record(kind=SecurityEvent.Kind.LOGIN_OK, user=user, request=request, via="web")


@receiver(user_signed_up)
def remember_request_language(sender, request, user, **kwargs):
    user_language_set(user=user, language=translation.get_language_from_request(request))


@receiver(user_logged_out)
def record_web_logout(sender, request, user, **kwargs):
    if user is not None:
        security_event_record(kind=SecurityEvent.Kind.LOGOUT, user=user, request=request, via="web")


@receiver(password_changed)
def end_everything_the_old_password_opened(sender, user, **kwargs):
    credentials_revoke_all(user=user, reason="password_changed")
