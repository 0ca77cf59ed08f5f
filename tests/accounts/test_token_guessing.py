"""Guessing bearer tokens: after QM_TOKEN_GUESS_LIMIT unknown tokens an address's unknown tokens are
refused (429) for the rest of the window, audited once; valid tokens from the same address (customers
behind one NAT) and other addresses are not affected. The same counting guards instance hosts and
forward-auth."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import SecurityEvent
from accounts.services import api_token_create

pytestmark = pytest.mark.django_db


def test_token_guessing_is_throttled_and_audited(user, settings):
    settings.QM_TOKEN_GUESS_LIMIT = 5
    _, valid = api_token_create(user=user, name="real")
    guesser = APIClient(REMOTE_ADDR="203.0.113.7")
    for n in range(5):
        response = guesser.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer qm_guess{n}")
        assert response.status_code == 401
    blocked = guesser.get("/api/auth/me", HTTP_AUTHORIZATION="Bearer qm_guess-more")
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "rate_limited"
    assert 0 < int(blocked["Retry-After"]) <= 60
    # A customer behind the same address, with a real token, still gets in.
    assert guesser.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {valid}").status_code == 200
    events = SecurityEvent.objects.filter(kind="token_guessing")
    assert events.count() == 1 and events.get().ip_address == "203.0.113.7"
    # Someone else, elsewhere, is not affected.
    other = APIClient(REMOTE_ADDR="198.51.100.9")
    assert other.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {valid}").status_code == 200


def test_forward_auth_counts_unknown_tokens_too(user, subscribe, settings, client):
    from instances.models import Instance
    from quantmesh.crypto import encrypt

    settings.QM_TOKEN_GUESS_LIMIT = 3
    settings.QM_TRUST_X_FORWARDED_FOR = True  # forward-auth's caller is Traefik; the client is forwarded
    subscribe(user, "professional")
    instance = Instance.objects.create(
        instance_id="qm-fa0001-1700000000",
        slug="fa0001",
        owner=user,
        plan=user.subscription.plan,
        status="running",
        image="x",
        proxy_secret_encrypted=encrypt("engine-secret"),
    )
    _, valid = api_token_create(user=user)
    host = f"instance-{instance.slug}.{settings.QM_BASE_DOMAIN}"

    def ask(token: str, address: str = "203.0.113.7"):
        return client.get(
            "/internal/forward-auth",
            HTTP_X_FORWARDED_HOST=host,
            HTTP_X_FORWARDED_FOR=address,
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )

    assert [ask(f"qm_guess{n}").status_code for n in range(3)] == [404, 404, 404]
    refused = ask("qm_guess-more")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert SecurityEvent.objects.filter(kind="token_guessing", ip_address="203.0.113.7").count() == 1
    assert ask(valid).status_code == 200  # the owner behind the same address
    assert ask("qm_guess-elsewhere", "198.51.100.9").status_code == 404  # another address counts apart
