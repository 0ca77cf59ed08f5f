"""Who may reach an instance's engine through its URL (instance-<slug>.<domain>).

The owner only: with a bearer token (the manual's export curl lines) or with the instance
cookie the console hands over through a one-time ticket (a browser's portal session cookie is
not sent to the instance's own host). Anyone else is told the instance does not exist.
Used by the embedded proxy and by Traefik's forward-auth in production.

The instance cookie is bound to the console session that asked for it: it carries that session's
key, encrypted under the portal's key list (so it cannot be forged even by someone who knows
SECRET_KEY), and works only while the session does. Logging out, a password change or reset (the
session's auth hash no longer matches) and the session's expiry all end it. Unknown bearer tokens
count towards the per-address guessing limit here as on the API.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from http.cookies import SimpleCookie
from importlib import import_module

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.base import SessionBase
from django.core.cache import cache
from django.utils.crypto import constant_time_compare
from rest_framework.exceptions import AuthenticationFailed

from accounts.authentication import bearer_authenticate
from quantmesh.crypto import InvalidToken, decrypt, encrypt

from .models import Instance
from .services.domains import instance_for_domain

INSTANCE_COOKIE = "qm_instance"
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
        .select_related("owner")
        .first()
    )


def authorize(*, slug: str, authorization: str, cookie_header: str, ip: str | None) -> InstanceAccess | None:
    """The instance if the request's bearer token or instance cookie belongs to its owner, else None.
    Raises rest_framework's Throttled while `ip` is over the unknown-token limit."""
    user_id, session_key = None, None
    scheme, _, raw = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and raw.strip():
        try:
            user, _token = bearer_authenticate(raw.strip(), ip=ip)
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
            user_id, session_key = _cookie_claim(cookie[INSTANCE_COOKIE].value, slug)
    if user_id is None:
        return None
    instance = _owned_instance(slug, user_id)
    if instance is None or (session_key is not None and not _session_alive(session_key, instance.owner)):
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


def _session_store(session_key: str | None = None) -> SessionBase:


    return import_module(settings.SESSION_ENGINE).SessionStore(session_key)


def _session_alive(session_key: str, user) -> bool:
    """The console session still exists, is this user's, and was opened with their current password."""
    session = _session_store(session_key).load()
    return session.get(SESSION_KEY) == str(user.pk) and constant_time_compare(
        session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()
    )


def ticket_issue(*, instance: Instance, user, session_key: str) -> str:
    """A one-time ticket (60 s) that lets the console's browser into the instance's host; what it
    stands for stays on the server."""
    nonce = secrets.token_urlsafe(32)
    cache.set(f"instance-ticket:{nonce}", {"u": user.pk, "s": instance.slug, "k": session_key}, timeout=TICKET_MAX_AGE)
    return nonce


def ticket_redeem(*, ticket: str, slug: str) -> str | None:
    """The instance cookie's value, or None if the ticket is bad, used or expired."""
    key = f"instance-ticket:{ticket}"
    data = cache.get(key) if 0 < len(ticket) <= 64 else None
    if not data or data.get("s") != slug or not cache.delete(key):
        return None
    return encrypt(json.dumps({"u": data["u"], "s": slug, "k": data["k"]}))


def _cookie_claim(value: str, slug: str) -> tuple[int | None, str | None]:
    """(user id, console session key) of an instance cookie for this host, or (None, None)."""
    try:
        data = json.loads(decrypt(value))
    except (InvalidToken, ValueError):
        return None, None
    if not isinstance(data, dict) or data.get("s") != slug or not data.get("k"):
        return None, None
    return data.get("u"), data["k"]
