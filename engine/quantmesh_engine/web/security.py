"""Who may call the engine and what a browser may do with its pages: the proxy secret on every
request but /healthz, the strict CSP and security headers, and the config forms' CSRF token."""

from __future__ import annotations

import hashlib
import hmac
import time
from secrets import token_hex

from aiohttp import web

from ..app import Engine
from .common import ENGINE_KEY, error_response

PROXY_SECRET_HEADER = "X-QuantMesh-Proxy-Secret"  # noqa: S105 (a header name)


@web.middleware
async def proxy_secret_required(request: web.Request, handler):
    if request.path == "/healthz":
        return await handler(request)
    engine = request.app[ENGINE_KEY]
    expected = engine.proxy_secret
    if expected is None:
        if engine.insecure:
            return await handler(request)
        return error_response(401, "no_proxy_secret", "This engine has no platform.yaml: it accepts no requests.")
    given = request.headers.get(PROXY_SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return error_response(401, "unauthorized", "Requests must come through the QuantMesh portal.")
    return await handler(request)


# The pages run no script and load nothing but their own stylesheet; forms post to themselves; never framed.
CSP = "; ".join(
    [
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self' data:",  # the empty data: favicon (no /favicon.ico request)
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CSRF_FIELD = "csrf_token"
CSRF_MAX_AGE = 3600
LOCAL_CSRF_KEY = token_hex(32)  # an engine run without platform.yaml (local development)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def _csrf_mac(engine: Engine, issued: int) -> str:
    key = (engine.proxy_secret or LOCAL_CSRF_KEY).encode()
    return hmac.new(key, f"config-form:{issued}".encode(), hashlib.sha256).hexdigest()


def csrf_token(engine: Engine) -> str:
    """A token for the config form: only a page served to the owner (through the portal) carries
    one; another site can neither read nor make it. Valid for CSRF_MAX_AGE seconds."""
    issued = int(time.time())
    return f"{issued}.{_csrf_mac(engine, issued)}"


def csrf_valid(engine: Engine, token: str) -> bool:
    issued, _, mac = (token or "").partition(".")
    if not issued.isdigit() or not 0 <= time.time() - int(issued) <= CSRF_MAX_AGE:
        return False
    return hmac.compare_digest(mac.encode(), _csrf_mac(engine, int(issued)).encode())


def forged_form(request: web.Request, engine: Engine, form) -> bool:
    """A form post sent from another site, or without a fresh token from this engine's own page."""
    cross_site = request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none")
    return cross_site or not csrf_valid(engine, str(form.get(CSRF_FIELD, "")))


def csrf_refused() -> web.Response:
    return error_response(403, "csrf_failed", "The form is stale or came from another site: reload the page.")
