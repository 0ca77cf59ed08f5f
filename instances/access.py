"""Who may reach an instance's engine through its URL (instance-<slug>.<domain>).

The owner only: with a bearer token (the manual's export curl lines) or with the instance
cookie the console hands over through a one-time ticket (a browser's portal session cookie is
not sent to the instance's own host). Anyone else is told the instance does not exist.
Used by the embedded proxy and by Traefik's forward-auth in production.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from http.cookies import SimpleCookie

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from rest_framework.exceptions import AuthenticationFailed

from accounts.authentication import token_authenticate
from quantmesh.crypto import decrypt

from .models import Instance

INSTANCE_COOKIE = "qm_instance"
TICKET_SALT = "quantmesh.instance-ticket"
COOKIE_SALT = "quantmesh.instance-cookie"
TICKET_MAX_AGE = 60


def instance_host_pattern() -> re.Pattern:
    return re.compile(rf"^instance-([a-z0-9]{{6}})\.{re.escape(settings.QM_BASE_DOMAIN)}(?::\d+)?$", re.IGNORECASE)


def slug_from_host(host: str, *, custom_domains: bool = False) -> str | None:
    """The instance a host name is for: instance-<slug>.<domain>, or (when asked: it costs a query)
    a verified custom domain."""
    match = instance_host_pattern().match(host or "")
    if match:
        return match.group(1).lower()
    if custom_domains:
        from .domains import instance_for_domain

        instance = instance_for_domain(host)
        return instance.slug if instance else None
    return None


@dataclass(frozen=True)
class InstanceAccess:
    instance: Instance
    proxy_secret: str


def _owned_instance(slug: str, user_id: int) -> Instance | None:
    return (
        Instance.objects.filter(slug=slug, owner_id=user_id, owner__is_active=True)
        .exclude(status__in=[Instance.Status.DELETED, Instance.Status.DELETING])
        .first()
    )


def authorize(*, slug: str, authorization: str, cookie_header: str) -> InstanceAccess | None:
    """The instance if the request's bearer token or instance cookie belongs to its owner, else None."""
    user_id = None
    scheme, _, raw = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and raw.strip():
        try:
            user, _token = token_authenticate(raw.strip())
        except AuthenticationFailed:
            return None
        user_id = user.pk
    else:
        cookie = SimpleCookie()
        try:
            cookie.load(cookie_header or "")
        except Exception:
            return None
        if INSTANCE_COOKIE in cookie:
            user_id = _cookie_user(cookie[INSTANCE_COOKIE].value, slug)
    if user_id is None:
        return None
    instance = _owned_instance(slug, user_id)
    if instance is None:
        return None
    return InstanceAccess(instance=instance, proxy_secret=decrypt(instance.proxy_secret_encrypted))


# Engine pages a hand-over may land on.
HANDOVER_PAGES = {"/", "/config"}


def browser_login_redirect(*, slug: str, method: str, path: str, accept: str, authorization: str) -> str | None:
    """Where to send a browser that opens an instance host without access: the portal's login, then
    the hand-over (the portal answers 404 there unless the signed-in user owns the instance). API
    clients (no text/html, or a bearer token) keep their 404."""
    if method != "GET" or authorization or "text/html" not in (accept or ""):
        return None
    page = path if path in HANDOVER_PAGES else "/"
    return f"{settings.QM_PUBLIC_URL}/instances/host/{slug}/open?next={page}"


def ticket_issue(*, instance: Instance, user) -> str:
    """A one-time ticket (60 s) that lets the console's browser into the instance's host."""
    nonce = secrets.token_urlsafe(16)
    cache.set(f"instance-ticket:{nonce}", 1, timeout=TICKET_MAX_AGE)
    return signing.dumps({"u": user.pk, "s": instance.slug, "n": nonce}, salt=TICKET_SALT)


def ticket_redeem(*, ticket: str, slug: str) -> str | None:
    """A signed cookie value for the instance host, or None if the ticket is bad, used or expired."""
    try:
        data = signing.loads(ticket, salt=TICKET_SALT, max_age=TICKET_MAX_AGE)
    except signing.BadSignature:
        return None
    if data.get("s") != slug or not cache.delete(f"instance-ticket:{data.get('n')}"):
        return None
    return signing.dumps({"u": data["u"], "s": slug}, salt=COOKIE_SALT)


def _cookie_user(value: str, slug: str) -> int | None:
    try:
        data = signing.loads(value, salt=COOKIE_SALT, max_age=settings.SESSION_COOKIE_AGE)
    except signing.BadSignature:
        return None
    return data["u"] if data.get("s") == slug else None
