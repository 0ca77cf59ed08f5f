from django import forms
from django.utils.translation import gettext_lazy as _
from django_otp.admin import OTPAdminAuthenticationForm

from . import throttling
from .requests import client_ip
from .services import login_failure_record


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code"),
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
        help_text=_("The 6-digit code from your authenticator app, or one of your backup codes."),
    )


class DisableTwoFactorForm(CodeForm):
    password = forms.CharField(
        label=_("Password"), widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )


class ThrottledAdminAuthenticationForm(OTPAdminAuthenticationForm):
    """The staff login: the same throttle and lock as the customers' logins, and one message for
    every failure (wrong password, missing or wrong code, not staff, locked), so the form never
    tells whether a staff password was right."""

    FAILURE = _(
        "Enter the e-mail, password and current two-factor code of a staff account. "
        "After repeated failures, wait a few minutes."
    )

    def clean(self):
        email = (self.cleaned_data.get("username") or "").strip().lower()
        try:
            throttling.check_login_allowed(ip=client_ip(self.request), email=email)
            return super().clean()
        except throttling.LoginBlocked:
            raise forms.ValidationError(self.FAILURE, code="invalid_login") from None
        except forms.ValidationError:
            login_failure_record(email=email, user=None, request=self.request, reason="admin_login_failed")
            raise forms.ValidationError(self.FAILURE, code="invalid_login") from None
