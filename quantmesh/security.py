"""Security headers on every portal response, with a strict Content-Security-Policy.

The console loads only its own scripts and styles (no inline code), so the policy allows nothing
else. Forms may post to the portal and be redirected to Stripe's Checkout and customer portal.
The API docs page (Swagger UI) starts itself with an inline script: it alone may run one.
"""

from __future__ import annotations

import ipaddress
import json

from django.conf import settings
from django.http import JsonResponse

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
        "form-action 'self' https://checkout.stripe.com https://billing.stripe.com",
    ]
)
DOCS_CSP = CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'").replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)
DOCS_PATH = "/api/docs/"
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", DOCS_CSP if request.path == DOCS_PATH else CSP)
        response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        response.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        return response


class RequestSizeLimitMiddleware:
    """Refuse a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE from its Content-Length, before anything
    reads it (413, in the API's error shape)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            message = f"The request body is {length} bytes; the limit is {limit} bytes."
            return JsonResponse(
                {"error": {"code": "payload_too_large", "message": message, "details": {"limit": limit}}},
                status=413,
            )
        return self.get_response(request)


def is_loopback(host: str | None) -> bool:
    try:
        address = ipaddress.ip_address((host or "").strip("[]"))
    except ValueError:
        return host == "localhost"
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def embedded_key_in_use() -> bool:
    return settings.SECRET_KEY == settings.INSECURE_SECRET_KEY


class EmbeddedKeyLoopbackOnly:
    """ASGI guard: with the embedded SECRET_KEY (public, in this repository: anyone could forge
    sessions, instance cookies and e-mail confirmations with it) the portal answers only on a
    loopback address. A connection that reached the server on any other address is refused (503,
    or close code 4503 on a websocket), so `daphne -b 0.0.0.0` on the embedded default serves
    nobody but the machine itself."""

    MESSAGE = (
        "This portal runs on the embedded SECRET_KEY, which is public: it answers only on 127.0.0.1. "
        "Set SECRET_KEY (and DJANGO_SETTINGS_MODULE=quantmesh.settings.production) to serve others."
    )

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and embedded_key_in_use():
            server = scope.get("server")
            if server and server[1] is not None and not is_loopback(server[0]):
                return await self._refuse(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _refuse(self, scope, receive, send):
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 4503})
            return
        body = json.dumps({"error": {"code": "insecure_secret_key", "message": self.MESSAGE, "details": {}}}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
