"""The per-instance URL (instance-<id>.<domain>) through a real daphne: the owner reaches the engine,
anyone else gets 404, the engine's secret never leaves the portal."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import urlparse

import pytest

from accounts.services import api_token_create
from instances.models import Instance
from quantmesh.crypto import decrypt
from tests.db import committing_db

from ..live_server import console_login, http_request, live_portal

pytestmark = committing_db


@pytest.fixture
def instance_portal(create_instance, customer):
    instance = Instance.objects.get(instance_id=create_instance("personal")["instance_id"])
    _, token = api_token_create(user=customer)
    with live_portal() as (base, _):
        yield base, token, instance, f"instance-{instance.slug}.localhost"


def test_owner_exports_trades_with_the_manual_curl_line(instance_portal):
    base, token, instance, host = instance_portal
    response, body = http_request(base, host, "/api/export/trades", {"Authorization": f"Bearer {token}"})
    assert response.status == 200
    assert response.getheader("Content-Type").startswith("text/csv")
    header = next(csv.reader(io.StringIO(body.decode())))
    assert header[:3] == ["time", "symbol", "side"]
    response, body = http_request(base, host, "/api/export/config", {"Authorization": f"Bearer {token}"})
    assert response.status == 200 and b"exchange" in body
    response, body = http_request(base, host, "/api/status", {"Authorization": f"Bearer {token}"})
    assert json.loads(body)["instance_id"] == instance.instance_id


@pytest.mark.parametrize("who", ["nobody", "stranger", "bad-token"])
def test_everyone_else_gets_404(instance_portal, make_user, who):
    base, _, instance, host = instance_portal
    headers = {}
    if who == "stranger":
        headers = {"Authorization": f"Bearer {api_token_create(user=make_user())[1]}"}
    elif who == "bad-token":
        headers = {"Authorization": "Bearer qm_guess"}
    for path in ["/", "/api/export/trades", "/api/status", "/metrics"]:
        response, body = http_request(base, host, path, headers)
        assert response.status == 404, path
        assert b"exchange" not in body and b"time,symbol" not in body


def test_unknown_instance_host_is_404(instance_portal):
    base, token, _, _ = instance_portal
    response, _ = http_request(base, "instance-zzzzzz.localhost", "/", {"Authorization": f"Bearer {token}"})
    assert response.status == 404


def test_the_engine_secret_stays_inside(instance_portal):
    base, token, instance, host = instance_portal
    secret = decrypt(instance.proxy_secret_encrypted)
    response, body = http_request(base, host, "/api/config", {"Authorization": f"Bearer {token}"})
    assert response.status == 200
    assert secret not in body.decode() and all(secret not in v for _, v in response.getheaders())


def test_console_hands_the_browser_over_with_a_one_time_ticket(instance_portal, customer, password):
    base, _, instance, host = instance_portal
    session = console_login(base, customer.email, password)
    handover, _ = http_request(base, "localhost", f"/instances/{instance.instance_id}/open", {"Cookie": session})
    assert handover.status == 302
    target = urlparse(handover.getheader("Location"))
    assert target.hostname == host
    ticket_path = f"{target.path}?{target.query}"
    response, _ = http_request(base, host, ticket_path)
    assert response.status == 302 and response.getheader("Location") == "/"
    cookie = response.getheader("Set-Cookie").split(";")[0]
    assert "HttpOnly" in response.getheader("Set-Cookie")
    page, body = http_request(base, host, "/", {"Cookie": cookie})
    assert page.status == 200 and b"QuantMesh engine" in body
    again, _ = http_request(base, host, ticket_path)  # the ticket works once
    assert again.status == 404
    other, _ = http_request(base, "instance-zzzzzz.localhost", "/", {"Cookie": cookie})  # and for its host only
    assert other.status == 404


def test_forward_auth_for_traefik(create_instance, customer, make_user, client):
    instance = Instance.objects.get(instance_id=create_instance("personal")["instance_id"])
    host = f"instance-{instance.slug}.localhost"
    _, token = api_token_create(user=customer)
    ok = client.get("/internal/forward-auth", HTTP_X_FORWARDED_HOST=host, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert ok.status_code == 200
    assert decrypt(instance.proxy_secret_encrypted) not in str(ok.headers)
    _, other = api_token_create(user=make_user())
    refused = client.get("/internal/forward-auth", HTTP_X_FORWARDED_HOST=host, HTTP_AUTHORIZATION=f"Bearer {other}")
    assert refused.status_code == 404


def test_traefik_provider_routes_each_instance_through_forward_auth(create_instance, client, settings):
    instance = Instance.objects.get(instance_id=create_instance("personal")["instance_id"])
    assert client.get("/internal/traefik/dynamic").status_code == 404  # off until a token is set
    settings.QM_TRAEFIK_PROVIDER_TOKEN = "provider-token-for-tests"
    assert client.get("/internal/traefik/dynamic", HTTP_X_QUANTMESH_PROVIDER_TOKEN="wrong").status_code == 404
    config = client.get("/internal/traefik/dynamic", HTTP_X_QUANTMESH_PROVIDER_TOKEN="provider-token-for-tests").json()
    name = f"instance-{instance.slug}"
    router = config["http"]["routers"][name]
    assert router["rule"] == f"Host(`{name}.{settings.QM_BASE_DOMAIN}`)"
    assert router["middlewares"] == ["quantmesh-owner-only", f"{name}-secret"]
    assert config["http"]["middlewares"]["quantmesh-owner-only"]["forwardAuth"]["address"].endswith(
        "/internal/forward-auth"
    )
    headers = config["http"]["middlewares"][f"{name}-secret"]["headers"]["customRequestHeaders"]
    assert headers["X-QuantMesh-Proxy-Secret"] == decrypt(instance.proxy_secret_encrypted)
    # After forward-auth the customer's portal credentials never reach the engine (empty: Traefik removes).
    assert (headers["Authorization"], headers["Cookie"]) == ("", "")
    assert config["http"]["services"][name]["loadBalancer"]["servers"][0]["url"] == (
        f"http://quantmesh-{instance.instance_id}:8080"
    )
    assert config["http"]["routers"][f"{name}-portal"]["rule"].endswith("PathPrefix(`/__quantmesh/`)")


def test_a_browser_without_access_goes_to_the_portal_login_then_the_hand_over(
    instance_portal, customer, password, make_user
):
    """The manual sends customers to https://instance-….: without a session that answered raw JSON.
    A browser now goes to the portal's login and through the hand-over; non-owners still get 404."""
    base, _, instance, host = instance_portal
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    response, _ = http_request(base, host, "/config", browser)
    assert response.status == 302
    login = urlparse(response.getheader("Location"))
    assert login.path == f"/instances/host/{instance.slug}/open" and login.query == "next=/config"
    unknown, _ = http_request(base, "instance-zzzzzz.localhost", "/", browser)
    assert unknown.status == 302  # the same answer for any host: it reveals nothing
    api, _ = http_request(base, host, "/api/status", {"Accept": "application/json"})
    assert api.status == 404  # API clients keep their 404
    portal_path = f"{login.path}?{login.query}"
    anonymous, _ = http_request(base, "localhost", portal_path)
    assert anonymous.status == 302 and "/accounts/login/" in anonymous.getheader("Location")
    owner, _ = http_request(base, "localhost", portal_path, {"Cookie": console_login(base, customer.email, password)})
    target = urlparse(owner.getheader("Location"))
    assert owner.status == 302 and target.hostname == host
    landed, _ = http_request(base, host, f"{target.path}?{target.query}")
    assert landed.status == 302 and landed.getheader("Location") == "/config"
    stranger = make_user()
    other, _ = http_request(base, "localhost", portal_path, {"Cookie": console_login(base, stranger.email, password)})
    assert other.status == 404
