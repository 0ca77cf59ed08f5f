"""allauth adapter: the web login shares the API login's lock-out."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django import forms

from . import throttling
from .requests import client_ip
from .selectors import user_has_two_factor
from .services import login_failure_record


class AccountAdapter(DefaultAccountAdapter):
    def pre_authenticate(self, request, **credentials):
        email = credentials.get("email") or credentials.get("username") or ""
        try:
            throttling.check_login_allowed(ip=client_ip(request), email=email)
        except throttling.LoginBlocked as blocked:
            minutes = max(1, round(blocked.retry_after / 60))
            raise forms.ValidationError(
                f"Too many failed login attempts. Try again in about {minutes} minute(s), or reset your password."
            ) from None
        super().pre_authenticate(request, **credentials)

    def authentication_failed(self, request, **credentials):
        email = credentials.get("email") or credentials.get("username") or ""
        login_failure_record(email=email, user=None, request=request, reason="invalid_credentials")

    def add_message(self, request, level, message_template=None, message_context=None, extra_tags="", message=None):
        # "Signed in" waits for the second factor: the password alone has not signed anyone in yet.
        if message_template and message_template.endswith("logged_in.txt"):
            user = getattr(request, "user", None)
            if user is not None and user.is_authenticated and user_has_two_factor(user):
                return
        super().add_message(request, level, message_template, message_context, extra_tags, message)
