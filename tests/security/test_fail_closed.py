"""Fail closed: internal endpoints refuse while their token is unset; the embedded SECRET_KEY serves
loopback only."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver

from tests.quantmesh.test_settings import ROOT

pytestmark = pytest.mark.django_db

# /internal/* endpoints that authenticate the visitor's own credentials (a portal session or the
# owner's bearer token) for Traefik's forward-auth, rather than a platform token. Every other
# internal endpoint must want a token; a new one must be listed here or refuse without its token.
VISITOR_AUTHENTICATED = {"instance_forward_auth", "grafana_auth"}
TOKEN_SETTINGS = ["QM_METRICS_TOKEN", "QM_TRAEFIK_PROVIDER_TOKEN", "QM_GRAFANA_DATASOURCE_TOKEN"]


def internal_routes():
    def walk(patterns, prefix=""):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                yield route, pattern.name

    return [(r, n) for r, n in walk(get_resolver().url_patterns) if r.lstrip("^").startswith(("internal/", "metrics"))]


def sample_path(route: str) -> str:
    route = route.lstrip("^").rstrip("$")
    return "/" + route.replace("<str:instance_id>", "qm-abcdef-1700000000").replace(
        "(?P<api_path>[a-z_]+(?:/[A-Za-z0-9_.:-]+/values)?)", "query"
    )


def test_every_internal_endpoint_refuses_while_its_token_is_unset(client, settings, make_user):
    for name in TOKEN_SETTINGS:
        setattr(settings, name, "")
    client.force_login(make_user(is_staff=True, is_superuser=True))
    routes = internal_routes()
    assert len(routes) >= 6, routes
    for route, name in routes:
        if name in VISITOR_AUTHENTICATED:
            continue
        path = sample_path(route)
        for auth in ["", "Bearer ", "Bearer  ", "Bearer None"]:
            extra = {"HTTP_AUTHORIZATION": auth, "HTTP_X_QUANTMESH_PROVIDER_TOKEN": "", "HTTP_X_GRAFANA_USER": "user-1"}
            response = client.get(path, **extra)
            assert response.status_code == 404, (path, auth, response.status_code)


def test_targets_with_the_token_label_owners_by_id_not_email(client, settings, user):
    settings.QM_METRICS_TOKEN = "t" * 40
    response = client.get("/internal/prometheus/targets", HTTP_AUTHORIZATION="Bearer " + "t" * 40)
    assert response.status_code == 200 and user.email not in response.content.decode()


def asgi_get(path: str, server: tuple[str, int]) -> tuple[int, dict]:
    from quantmesh.asgi import application

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"localhost")],
        "server": server,
        "client": ("198.18.0.9", 50000),
    }
    sent, requests = [], [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the client stays connected

    async def send(message):
        sent.append(message)

    asyncio.run(application(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], (json.loads(body) if body.startswith(b"{") else {})


@pytest.mark.django_db(transaction=True)
def test_embedded_secret_key_answers_on_loopback_only():
    assert settings.SECRET_KEY == settings.INSECURE_SECRET_KEY  # the suite runs on the embedded default
    status, body = asgi_get("/healthz", ("198.18.0.5", 8000))  # reached on a public address
    assert status == 503 and body["error"]["code"] == "insecure_secret_key"
    for loopback in ["127.0.0.1", "::1", "::ffff:127.0.0.1"]:
        assert asgi_get("/healthz", (loopback, 8000))[0] == 200, loopback


def test_run_portal_refuses_a_public_bind_with_the_embedded_key():
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "quantmesh.settings.base", "HOME": "/tmp"}
    result = subprocess.run(
        [sys.executable, "manage.py", "run_portal", "--host", "0.0.0.0", "--port", "1"],  # noqa: S104
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "embedded SECRET_KEY" in result.stderr
