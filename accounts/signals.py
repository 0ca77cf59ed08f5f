"""Web logins and logouts (allauth and the admin) land in the audit trail."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver

from .models import SecurityEvent


@receiver(user_logged_in)
def record_web_login(sender, request, user, **kwargs):
    from . import throttling
    from .services import security_event_record

    throttling.clear_login_failures(email=user.email)
    security_event_record(kind=SecurityEvent.Kind.LOGIN_OK, user=user, request=request, via="web")


@receiver(user_logged_out)
def record_web_logout(sender, request, user, **kwargs):
    from .services import security_event_record

    if user is not None:
        security_event_record(kind=SecurityEvent.Kind.LOGOUT, user=user, request=request, via="web")
