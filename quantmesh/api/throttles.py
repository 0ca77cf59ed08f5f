"""API rate limits per user (anonymous callers per address), from settings read at call time.

The address is the one the rest of the portal trusts (accounts.requests.client_ip): DRF's own
would take any X-Forwarded-For a client sends."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from accounts.requests import client_ip


class TrustedAddressMixin:
    def get_ident(self, request):
        return client_ip(request) or "-"


class PerUserRateThrottle(TrustedAddressMixin, UserRateThrottle):
    """QM_API_USER_RATE requests per user, whichever token or session they come with."""

    def get_rate(self):
        return settings.QM_API_USER_RATE


class PerAddressAnonRateThrottle(TrustedAddressMixin, AnonRateThrottle):
    def get_rate(self):
        return settings.QM_API_ANON_RATE
