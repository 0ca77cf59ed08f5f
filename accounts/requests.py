"""What the audit trail needs to know about the HTTP request behind an event."""

from __future__ import annotations

from django.conf import settings


def client_ip(request) -> str | None:
    if request is None:
        return None
    # Behind our own proxy (Traefik) the client is the last address it appended.
    if getattr(settings, "QM_TRUST_X_FORWARDED_FOR", False):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[-1].strip() or None
    return request.META.get("REMOTE_ADDR") or None


def scope_client_ip(scope) -> str | None:
    """client_ip for a websocket's ASGI scope, by the same rules."""
    if getattr(settings, "QM_TRUST_X_FORWARDED_FOR", False):
        forwarded = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-forwarded-for"), "")
        if forwarded:
            return forwarded.split(",")[-1].strip() or None
    client = scope.get("client")
    return client[0] if client else None


def user_agent(request) -> str:
    if request is None:
        return ""
    return request.META.get("HTTP_USER_AGENT", "")[:255]
