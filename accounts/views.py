"""Console pages of accounts: the second login step and the security page."""

from __future__ import annotations

import base64

import segno
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django.views.i18n import set_language
from django_otp import login as otp_login

from quantmesh.errors import ServiceError

from . import selectors, services, throttling
from .forms import CodeForm, DisableTwoFactorForm


@require_POST
def language_switch(request):
    """Django's set_language, and the choice remembered on the account: alerts and DNS messages,
    written outside any request, use it."""
    response = set_language(request)
    if request.user.is_authenticated:
        services.user_language_set(user=request.user, language=request.POST.get("language", ""))
    return response


def _safe_next(request, default: str = "/") -> str:
    target = request.POST.get("next") or request.GET.get("next") or default
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return default


@login_required
def two_factor_verify(request):
    """Step two of the web login: the TOTP or backup code."""
    if request.user.is_verified() or not selectors.user_has_two_factor(request.user):
        return redirect(_safe_next(request))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = services.second_factor_verify(user=request.user, code=form.cleaned_data["code"], request=request)
        if device is not None:
            otp_login(request, device)
            throttling.lift_locks(email=request.user.email)  # the second factor proves it is the owner
            return redirect(_safe_next(request))
        services.login_failure_record(
            email=request.user.email, user=request.user, request=request, reason="otp_invalid"
        )
        form.add_error("code", _("That code is wrong, expired or already used."))
    return render(request, "accounts/two_factor_verify.html", {"form": form, "next": _safe_next(request)})


@login_required
def security(request):
    """2FA status and management, backup codes, recent security events."""
    enabled = selectors.user_has_two_factor(request.user)
    context = {
        "two_factor_enabled": enabled,
        "backup_codes_remaining": selectors.backup_codes_remaining(request.user) if enabled else 0,
        "events": selectors.security_event_list(user=request.user, limit=30),
        # Two code fields on one page: each needs its own id (auto_id), the field names stay `code`.
        "disable_form": DisableTwoFactorForm(auto_id="disable_%s"),
        "regenerate_form": CodeForm(auto_id="regenerate_%s"),
        "new_backup_codes": request.session.pop("new_backup_codes", None),
    }
    return render(request, "accounts/security.html", context)


@login_required
def two_factor_enable(request):
    """Enrol: scan the QR code, confirm with a code; backup codes are shown once afterwards."""
    device = services.two_factor_enrol_begin(user=request.user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            confirmed, codes = services.two_factor_enrol_confirm(
                user=request.user, code=form.cleaned_data["code"], request=request
            )
        except ServiceError as error:
            form.add_error("code", error.message)
        else:
            otp_login(request, confirmed)
            request.session["new_backup_codes"] = codes
            messages.success(request, _("Two-factor authentication is on."))
            return redirect("security")
    qr = segno.make(device.config_url, error="m")
    context = {
        "form": form,
        "qr_svg": qr.svg_inline(scale=5, dark="#111827"),
        "secret": _base32_secret(device),
    }
    return render(request, "accounts/two_factor_enable.html", context)


def _base32_secret(device) -> str:
    return base64.b32encode(device.bin_key).decode().rstrip("=")


@login_required
@require_POST
def two_factor_disable(request):
    form = DisableTwoFactorForm(request.POST)
    if form.is_valid():
        try:
            services.two_factor_disable(
                user=request.user,
                password=form.cleaned_data["password"],
                code=form.cleaned_data["code"],
                request=request,
            )
        except ServiceError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, _("Two-factor authentication is off."))
    else:
        messages.error(request, _("Enter your password and a current code to turn two-factor off."))
    return redirect("security")


@login_required
@require_POST
def backup_codes_regenerate(request):
    form = CodeForm(request.POST)
    if form.is_valid():
        try:
            request.session["new_backup_codes"] = services.backup_codes_regenerate(
                user=request.user, code=form.cleaned_data["code"], request=request
            )
        except ServiceError as error:
            messages.error(request, error.message)
    else:
        messages.error(request, _("Enter a current code to generate new backup codes."))
    return redirect("security")


@login_required
def tokens(request):
    """API tokens: create (the secret is shown once), list, revoke."""
    if request.method == "POST":
        if "revoke" in request.POST:
            token = selectors.api_token_get(user=request.user, token_id=int(request.POST["revoke"]))
            if token is not None:
                services.api_token_revoke(token=token, request=request)
                messages.success(request, _("Token revoked."))
            return redirect("tokens")
        name = request.POST.get("name", "").strip()[:100]
        raw = services.api_token_create(user=request.user, name=name or _("Console token"), request=request)[1]
        request.session["new_token"] = raw
        return redirect("tokens")
    context = {
        "tokens": selectors.api_token_list(user=request.user),
        "new_token": request.session.pop("new_token", None),
    }
    return render(request, "accounts/tokens.html", context)
