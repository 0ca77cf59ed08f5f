"""Custom domains: CNAME verification against a real DNS server on loopback, Traefik routing,
forward-auth on the custom host, plan gating, tenant isolation."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.services import api_token_create
from instances.models import CustomDomain, Instance
from instances.services.domains import domains_recheck
from instances.traefik import dynamic_config
from quantmesh.crypto import encrypt
from tests.capture import capture_instance_events

from .conftest import running_rows
from .dns_server import LoopbackDNS

pytestmark = pytest.mark.django_db


@pytest.fixture
def dns(settings):
    server = LoopbackDNS()
    settings.QM_DNS_NAMESERVERS = ["127.0.0.1"]
    settings.QM_DNS_PORT = server.port
    settings.QM_BASE_DOMAIN = "quantmesh.test"
    yield server.zone
    server.stop()


def _client(user) -> APIClient:
    _, raw = api_token_create(user=user, name="t")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    client.raw_token = raw
    return client


@pytest.fixture
def owned(user, subscribe):
    subscribe(user, "professional")
    instance = running_rows(user, 1, prefix="d")[0]
    Instance.objects.filter(pk=instance.pk).update(proxy_secret_encrypted=encrypt("engine-secret"))
    return instance, _client(user)


def test_a_domain_with_the_right_cname_is_verified_and_routed(owned, dns, client, django_capture_on_commit_callbacks):
    instance, api = owned
    target = f"instance-{instance.slug}.quantmesh.test"
    dns.cnames["trade.example.com"] = target
    with django_capture_on_commit_callbacks(execute=True):  # the check a worker makes right after
        response = api.post(
            f"/api/saas/instances/{instance.instance_id}/domains", {"domain": "Trade.Example.com."}, format="json"
        )
    assert response.status_code == 201, response.content
    body = api.get(f"/api/saas/instances/{instance.instance_id}/domains").json()[0]
    assert (body["domain"], body["cname_target"], body["verified"], body["last_error"]) == (
        "trade.example.com",
        target,
        True,
        "",
    )
    router = dynamic_config()["http"]["routers"][f"instance-{instance.slug}"]
    assert "Host(`trade.example.com`)" in router["rule"] and router["tls"]["certResolver"]
    # Traefik's forward-auth for the custom host: the owner passes, anyone else gets 404.
    ok = client.get(
        "/internal/forward-auth",
        HTTP_X_FORWARDED_HOST="trade.example.com",
        HTTP_AUTHORIZATION=f"Bearer {api.raw_token}",
    )
    assert ok.status_code == 200 and ok["X-QuantMesh-Instance"] == instance.instance_id
    assert client.get("/internal/forward-auth", HTTP_X_FORWARDED_HOST="trade.example.com").status_code == 404
    assert Instance.objects.get(pk=instance.pk).events.filter(kind="domain_verified").exists()


def test_verification_waits_for_dns_and_says_what_is_wrong(owned, dns, django_capture_on_commit_callbacks):
    instance, api = owned
    base = f"/api/saas/instances/{instance.instance_id}/domains"
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(base, {"domain": "bot.example.org"}, format="json").json()["verified"] is False
    body = api.get(base).json()[0]
    assert body["verified"] is False and body["last_error"] == "bot.example.org does not exist in DNS yet"
    assert "bot.example.org" not in str(dynamic_config())
    dns.cnames["bot.example.org"] = "somewhere-else.example.net"
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(f"{base}/bot.example.org").status_code == 202
    body = api.get(base).json()[0]
    assert body["verified"] is False
    assert (
        body["last_error"]
        == f"bot.example.org points to somewhere-else.example.net, not instance-{instance.slug}.quantmesh.test"
    )
    dns.cnames["bot.example.org"] = f"instance-{instance.slug}.quantmesh.test"
    with django_capture_on_commit_callbacks(execute=True):
        assert domains_recheck() == 1  # the periodic check picks the change up
    assert api.get(base).json()[0]["verified"] is True
    assert "bot.example.org" in str(dynamic_config())
    with capture_instance_events(expected=1) as published:
        assert api.delete(f"{base}/bot.example.org").status_code == 204
    assert (published[0].kind, published[0].detail) == ("domain_removed", {"domain": "bot.example.org"})
    assert not CustomDomain.objects.exists() and "bot.example.org" not in str(dynamic_config())


@pytest.mark.parametrize(
    "domain,status,code",
    [
        ("not a domain", 400, "invalid_request"),
        ("localhost", 400, "invalid_request"),
        ("x.quantmesh.test", 400, "invalid_request"),
        ("quantmesh.test", 400, "invalid_request"),
    ],
)
def test_bad_domains_are_refused(owned, dns, domain, status, code):
    instance, api = owned
    response = api.post(f"/api/saas/instances/{instance.instance_id}/domains", {"domain": domain}, format="json")
    assert response.status_code == status and response.json()["error"]["code"] == code
    assert not CustomDomain.objects.exists()


def test_one_domain_one_instance_and_plans_without_the_feature(owned, dns, make_user, subscribe):
    instance, api = owned
    api.post(f"/api/saas/instances/{instance.instance_id}/domains", {"domain": "shared.example.com"}, format="json")
    other = make_user()
    subscribe(other, "enterprise")
    theirs = running_rows(other, 1, prefix="x")[0]
    taken = _client(other).post(
        f"/api/saas/instances/{theirs.instance_id}/domains", {"domain": "shared.example.com"}, format="json"
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "domain_taken"
    # Another customer cannot see or touch this instance's domains.
    stranger = _client(other)
    assert stranger.get(f"/api/saas/instances/{instance.instance_id}/domains").status_code == 404
    assert stranger.delete(f"/api/saas/instances/{instance.instance_id}/domains/shared.example.com").status_code == 404
    personal = make_user()
    subscribe(personal, "personal")
    small = running_rows(personal, 1, prefix="p")[0]
    refused = _client(personal).post(
        f"/api/saas/instances/{small.instance_id}/domains", {"domain": "p.example.com"}, format="json"
    )
    assert refused.status_code == 403 and "Professional" in refused.json()["error"]["message"]


def test_console_adds_checks_and_removes_a_domain(owned, dns, client, user, django_capture_on_commit_callbacks):
    instance, _ = owned
    client.force_login(user)
    page = client.get(f"/instances/{instance.instance_id}?tab=domains").content.decode()
    assert f"instance-{instance.slug}.quantmesh.test" in page and "Add domain" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/instances/{instance.instance_id}/domains", {"action": "add", "domain": "c.example.com"}, follow=True
        )
    assert "c.example.com: DNS is being checked" in response.content.decode()
    page = client.get(f"/instances/{instance.instance_id}?tab=domains").content.decode()
    assert "not verified: c.example.com does not exist in DNS yet" in page
    dns.cnames["c.example.com"] = f"instance-{instance.slug}.quantmesh.test"
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/instances/{instance.instance_id}/domains", {"action": "verify", "domain": "c.example.com"})
    page = client.get(f"/instances/{instance.instance_id}?tab=domains").content.decode()
    assert "<strong>c.example.com</strong> · verified" in page
    client.post(f"/instances/{instance.instance_id}/domains", {"action": "remove", "domain": "c.example.com"})
    assert not CustomDomain.objects.exists()


def test_the_dns_error_is_written_in_the_owners_language(owned, user, dns, client, django_capture_on_commit_callbacks):
    """A worker checks DNS, outside any request: what it found is written in the language the owner
    reads the console in, and the domains tab shows it so."""
    from accounts.services import user_language_set

    instance, api = owned
    user_language_set(user=user, language="zh-hans")
    dns.cnames["bot.example.org"] = "somewhere-else.example.net"
    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"/api/saas/instances/{instance.instance_id}/domains", {"domain": "bot.example.org"}, format="json")
    expected = f"bot.example.org 指向 somewhere-else.example.net，而不是 instance-{instance.slug}.quantmesh.test"
    assert CustomDomain.objects.get(domain="bot.example.org").last_error == expected
    client.force_login(user)
    page = client.get(f"/instances/{instance.instance_id}?tab=domains", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert expected in page.content.decode()
    refused = api.post(
        f"/api/saas/instances/{instance.instance_id}/domains",
        {"domain": "x.quantmesh.test"},
        format="json",
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    )
    assert refused.json()["error"]["message"] == "域名：x.quantmesh.test 属于 QuantMesh Cloud；请使用您自己的域名。"
