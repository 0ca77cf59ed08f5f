"""Custom-domain abuse: squatting, hoarding, slow DNS on the request path and in periodic work, and a
domain that stays routed after its owner's CNAME is gone."""

from __future__ import annotations

import socket
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from instances.models import CustomDomain
from instances.services.domains import domains_recheck
from instances.traefik import dynamic_config
from tests.instances.test_domains import _client, dns, owned  # noqa: F401 (fixtures)

from ..instances.conftest import running_rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def silent_dns(settings):
    """A DNS server that never answers (a black-holed resolver)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    settings.QM_DNS_NAMESERVERS = ["127.0.0.1"]
    settings.QM_DNS_PORT = sock.getsockname()[1]
    settings.QM_BASE_DOMAIN = "quantmesh.test"
    yield
    sock.close()


def test_one_instance_cannot_hoard_domains(owned, dns, settings):  # noqa: F811
    instance, api = owned
    settings.QM_DOMAINS_PER_INSTANCE = 5
    base = f"/api/saas/instances/{instance.instance_id}/domains"
    for n in range(5):
        assert api.post(base, {"domain": f"d{n}.example.com"}, format="json").status_code == 201
    refused = api.post(base, {"domain": "one-more.example.com"}, format="json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "domain_limit"
    assert CustomDomain.objects.filter(instance=instance).count() == 5


def test_an_unverified_name_is_released_after_72_hours(owned, dns, make_user, subscribe):  # noqa: F811
    instance, api = owned
    api.post(f"/api/saas/instances/{instance.instance_id}/domains", {"domain": "brand.example.com"}, format="json")
    CustomDomain.objects.filter(domain="brand.example.com").update(created_at=timezone.now() - timedelta(hours=73))
    domains_recheck()
    assert not CustomDomain.objects.filter(domain="brand.example.com").exists()
    assert instance.events.filter(kind="domain_expired").exists()
    rightful = make_user()
    subscribe(rightful, "professional")
    theirs = running_rows(rightful, 1, prefix="r")[0]
    taken = _client(rightful).post(
        f"/api/saas/instances/{theirs.instance_id}/domains", {"domain": "brand.example.com"}, format="json"
    )
    assert taken.status_code == 201


def test_slow_dns_stays_off_the_request_path_and_each_check_is_short(owned, silent_dns):  # noqa: F811
    instance, api = owned
    base = f"/api/saas/instances/{instance.instance_id}/domains"
    started = time.monotonic()
    assert api.post(base, {"domain": "slow.example.com"}, format="json").status_code == 201
    assert api.post(f"{base}/slow.example.com").status_code == 202
    assert time.monotonic() - started < 1.0  # the old add waited 5 s for DNS inside the request
    for n in range(3):
        api.post(base, {"domain": f"slow{n}.example.com"}, format="json")
    started = time.monotonic()
    assert domains_recheck() == 4  # the periodic pass only enqueues: it never waits for DNS
    assert time.monotonic() - started < 1.0
    from instances.services.domains import domain_check

    started = time.monotonic()
    custom = domain_check(domain_id=CustomDomain.objects.get(domain="slow.example.com").pk)
    assert time.monotonic() - started < 3.0 and custom.last_error.startswith("DNS did not answer")


def test_a_verified_domain_is_withdrawn_when_its_cname_goes(owned, dns, django_capture_on_commit_callbacks):  # noqa: F811
    instance, api = owned
    dns.cnames["shop.example.com"] = f"instance-{instance.slug}.quantmesh.test"
    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"/api/saas/instances/{instance.instance_id}/domains", {"domain": "shop.example.com"}, format="json")
    assert "shop.example.com" in str(dynamic_config())
    dns.cnames["shop.example.com"] = "attacker.example.net"  # the domain changed hands, or its record
    with django_capture_on_commit_callbacks(execute=True):
        domains_recheck()
    custom = CustomDomain.objects.get(domain="shop.example.com")
    assert custom.verified_at is None and "attacker.example.net" in custom.last_error
    assert "shop.example.com" not in str(dynamic_config())
    assert instance.events.filter(kind="domain_withdrawn").exists()
