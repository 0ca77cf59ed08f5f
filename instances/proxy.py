"""The embedded default's instance router: requests for instance-<slug>.<domain> go to that
instance's engine, everything else to Django. (In production Traefik routes, asking
`forward_auth` below, and sends instance-*/__quantmesh/* to the portal; engines are never
published.)

The proxy streams in both directions, strips the customer's credentials, and adds the
engine's per-instance secret, so the engine trusts only requests that came through here.
"""

from __future__ import annotations

import json
from http.cookies import CookieError, SimpleCookie

import aiohttp
from asgiref.sync import sync_to_async
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from rest_framework.exceptions import Throttled
from yarl import URL

from accounts.requests import client_ip, scope_client_ip
from strategies.gating import CONFIG_WRITES, screen_config_write

from . import access
from .engine_client import PROXY_SECRET_HEADER
from .runtime import get_backend

# Paths on an instance host that the portal itself answers (the console's ticket hand-over).
PORTAL_PREFIX = "/__quantmesh/"
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
# Never forwarded to the engine: the customer's portal credentials (Traefik's route strips the same).
ENGINE_STRIPPED_CREDENTIALS = ("Authorization", "Cookie")
STRIPPED_REQUEST = HOP_BY_HOP | {h.lower() for h in ENGINE_STRIPPED_CREDENTIALS} | {PROXY_SECRET_HEADER.lower()}


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return ""


def _cookie(scope, name: str) -> str | None:
    jar = SimpleCookie()
    try:
        jar.load(_header(scope, b"cookie"))
    except CookieError:
        return None
    return jar[name].value if name in jar else None


async def _send_simple(send, status: int, body: bytes, content_type: bytes, extra: list | None = None):
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send, status: int, code: str, message: str):
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
    await _send_simple(send, status, body, b"application/json")


async def _not_found(send):
    await _error(send, 404, "not_found", "No such instance.")


def throttled_body(throttled: Throttled) -> dict:
    details = {"retry_after": throttled.wait}
    return {"error": {"code": "rate_limited", "message": str(throttled.detail), "details": details}}


def request_target_path(scope) -> str | None:
    """The request's path when its target is origin-form (`/path`), else None: an absolute-form
    (`http://host/x`), authority-form or `@host:port/x` target must never reach the upstream URL."""
    raw = scope.get("raw_path") or scope.get("path", "").encode("latin-1")
    if not raw.startswith(b"/") or any(byte < 0x21 or byte == 0x7F for byte in raw):
        return None
    return raw.decode("latin-1")


def upstream_url(host: str, port: int, scope) -> URL | None:
    """The engine's URL built from its parts (never by joining strings): scheme, host and port are
    ours; only the path and query come from the client, and only as path and query."""
    path = request_target_path(scope)
    if path is None:
        return None
    query = scope.get("query_string", b"").decode("latin-1")
    return URL.build(scheme="http", host=host, port=port, path=path, query_string=query, encoded=True)


class InstanceRouter:
    def __init__(self, django_app):
        self.django_app = django_app
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, scope, receive, send):
        slug = access.slug_from_host(_header(scope, b"host")) if scope["type"] == "http" else None
        if slug is None:
            return await self.django_app(scope, receive, send)
        if request_target_path(scope) is None:
            return await _error(send, 400, "bad_request_target", "The request target must be a path (/...).")
        if scope["path"].startswith(PORTAL_PREFIX):
            return await self.django_app(scope, receive, send)
        try:
            grant = await sync_to_async(access.authorize)(
                slug=slug,
                authorization=_header(scope, b"authorization"),
                cookie_header=_header(scope, b"cookie"),
                ip=scope_client_ip(scope),
            )
        except Throttled as throttled:
            wait = str(int(throttled.wait or 1)).encode()
            body = json.dumps(throttled_body(throttled)).encode()
            return await _send_simple(send, 429, body, b"application/json", [(b"retry-after", wait)])
        if grant is None:
            login = access.browser_login_redirect(
                slug=slug,
                method=scope["method"],
                path=scope["path"],
                accept=_header(scope, b"accept"),
                authorization=_header(scope, b"authorization"),
            )
            if login:
                return await _send_simple(send, 302, b"", b"text/plain", [(b"location", login.encode())])
            return await _not_found(send)
        if (scope["method"], scope["path"]) in CONFIG_WRITES:
            status, error, receive = await screen_config_write(scope, receive, owner=grant.instance.owner)
            if status is not None:
                return await _send_simple(send, status, json.dumps({"error": error}).encode(), b"application/json")
        await self._forward(scope, receive, send, grant)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=300), auto_decompress=False
            )
        return self._session

    async def _forward(self, scope, receive, send, grant: access.InstanceAccess):
        host, port = await sync_to_async(get_backend().endpoint)(grant.instance.instance_id)
        url = upstream_url(host, port, scope)
        headers = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in scope["headers"]
            if key.decode("latin-1").lower() not in STRIPPED_REQUEST
        }
        headers[PROXY_SECRET_HEADER] = grant.proxy_secret
        # Cookies stay here; the console's language choice (set at the hand-over) goes on as a header.
        language = _cookie(scope, "qm_language")
        if language in ("en", "zh-hans"):
            headers["Accept-Language"] = "zh-CN,zh;q=0.9" if language == "zh-hans" else "en"
        headers["X-Forwarded-Proto"] = scope.get("scheme", "http")

        async def body():
            more = True
            while more:
                message = await receive()
                more = message.get("more_body", False)
                if message.get("body"):
                    yield message["body"]

        try:
            async with self._client().request(
                scope["method"], url, headers=headers, data=body(), allow_redirects=False
            ) as upstream:
                response_headers = [
                    (k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in upstream.headers.items()
                    if k.lower() not in HOP_BY_HOP
                ]
                await send({"type": "http.response.start", "status": upstream.status, "headers": response_headers})
                async for chunk in upstream.content.iter_chunked(64 * 1024):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
        except aiohttp.ClientError:
            body = json.dumps(
                {
                    "error": {
                        "code": "instance_unavailable",
                        "message": "The instance is not answering; check that it is running.",
                        "details": {},
                    }
                }
            ).encode()
            await _send_simple(send, 502, body, b"application/json")


def forward_auth(request):
    """Traefik forwardAuth: 200 when the caller owns the instance, else 404. It never returns the
    engine secret (a client could read it); Traefik's per-instance route adds that header itself."""
    slug = access.slug_from_host(request.headers.get("X-Forwarded-Host", ""), custom_domains=True)
    try:
        grant = slug and access.authorize(
            slug=slug,
            authorization=request.headers.get("Authorization", ""),
            cookie_header=request.headers.get("Cookie", ""),
            ip=client_ip(request),
        )
    except Throttled as throttled:
        wait = str(int(throttled.wait or 1))
        return JsonResponse(throttled_body(throttled), status=429, headers={"Retry-After": wait})
    if not grant:
        login = slug and access.browser_login_redirect(
            slug=slug,
            method=request.headers.get("X-Forwarded-Method", "GET"),
            path=request.headers.get("X-Forwarded-Uri", "/").split("?")[0],
            accept=request.headers.get("Accept", ""),
            authorization=request.headers.get("Authorization", ""),
        )
        if login:
            return HttpResponseRedirect(login)
        return JsonResponse({"error": {"code": "not_found", "message": "No such instance.", "details": {}}}, status=404)
    response = HttpResponse(status=200)
    response["X-QuantMesh-Instance"] = grant.instance.instance_id
    return response
