"""The second login step: a user with two-factor enabled reaches nothing else until the code is given."""

from __future__ import annotations

from urllib.parse import urlencode

from django.shortcuts import redirect
from django.urls import reverse

from .selectors import user_has_two_factor

# Paths a half-logged-in user may still reach: the code step itself, logout, assets, and the
# API (which authenticates with bearer tokens, and refuses unverified sessions on its own).
EXEMPT_PREFIXES = ("/accounts/2fa/verify", "/accounts/logout", "/static/", "/api/", "/healthz", "/readyz", "/i18n/")


class SecondFactorRequiredMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # The path first: on exempt paths (the whole API) the user - a session read - is never loaded here.
        if request.path.startswith(EXEMPT_PREFIXES):
            return self.get_response(request)
        user = request.user
        if user.is_authenticated and not user.is_verified() and user_has_two_factor(user):
            query = urlencode({"next": request.get_full_path()})
            return redirect(f"{reverse('two_factor_verify')}?{query}")
        return self.get_response(request)
