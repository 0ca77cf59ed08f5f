"""Bearer tokens: listing, creation shown once, revocation, expiry, logout, /me."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from accounts.models import ApiToken, SecurityEvent
from accounts.services import api_token_create

pytestmark = pytest.mark.django_db


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_me_with_bearer_token(api_client, user, subscribe):
    subscribe(user, "personal")
    response = api_client.get("/api/auth/me")
    assert response.status_code == 200
    body = response.json()
    assert body["email"] == user.email
    assert body["plan"] == "personal"
    assert body["two_factor_enabled"] is False


@pytest.mark.parametrize(
    "header, code",
    [
        (None, "not_authenticated"),
        ("Bearer qm_not-a-real-token", "authentication_failed"),
        ("Bearer", "authentication_failed"),
        ("Bearer a b", "authentication_failed"),
    ],
)
def test_me_rejects_missing_or_bad_tokens(header, code):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/auth/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert response["WWW-Authenticate"] == "Bearer"


def test_create_list_and_revoke_token(api_client, user):
    created = api_client.post("/api/auth/tokens", {"name": "ci deploy", "expires_in_days": 7}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["token"].startswith(body["prefix"])
    assert timedelta(days=6, hours=23) < parse_datetime(body["expires_at"]) - timezone.now() <= timedelta(days=7)

    listed = api_client.get("/api/auth/tokens").json()
    assert {t["name"] for t in listed} == {"tests", "ci deploy"}
    assert all("token" not in t for t in listed)  # the secret is never shown again
    assert [t["current"] for t in listed if t["name"] == "tests"] == [True]

    new_client = bearer(body["token"])
    assert new_client.get("/api/auth/me").status_code == 200
    assert api_client.delete(f"/api/auth/tokens/{body['id']}").status_code == 204
    assert new_client.get("/api/auth/me").status_code == 401
    assert api_client.delete(f"/api/auth/tokens/{body['id']}").status_code == 404
    kinds = list(SecurityEvent.objects.filter(user=user).values_list("kind", flat=True))
    assert kinds.count("token_created") == 2 and kinds.count("token_revoked") == 1


def test_cannot_revoke_another_users_token(api_client, other_user):
    foreign, _ = api_token_create(user=other_user)
    response = api_client.delete(f"/api/auth/tokens/{foreign.pk}")
    assert response.status_code == 404
    foreign.refresh_from_db()
    assert foreign.revoked_at is None


def test_expired_token_is_refused(user):
    token, raw = api_token_create(user=user, ttl=timedelta(seconds=1))
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(raw).get("/api/auth/me")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_logout_revokes_the_current_token(api_client):
    assert api_client.post("/api/auth/logout").status_code == 204
    assert api_client.get("/api/auth/me").status_code == 401


def test_last_used_is_recorded(api_client, user):
    api_client.get("/api/auth/me")
    assert ApiToken.objects.get(user=user).last_used_at is not None


@pytest.mark.parametrize(
    "body, field",
    [({"name": "x" * 101}, "name"), ({"expires_in_days": 0}, "expires_in_days"), ({"scope": "all"}, "scope")],
)
def test_token_create_validation(api_client, body, field):
    response = api_client.post("/api/auth/tokens", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]
