"""Entitlements read at most once per user and request (billing.selectors.entitlements_memo)."""

from __future__ import annotations

from .selectors import entitlements_memo


class EntitlementsMemoMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with entitlements_memo():
            return self.get_response(request)
