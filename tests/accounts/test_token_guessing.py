"""Guessing bearer tokens: after QM_TOKEN_GUESS_LIMIT unknown tokens an address is refused (429)
for the rest of the window, audited once; other addresses are not affected."""

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
    blocked = guesser.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {valid}")
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "rate_limited"
    assert 0 < int(blocked["Retry-After"]) <= 60
    events = SecurityEvent.objects.filter(kind="token_guessing")
    assert events.count() == 1 and events.get().ip_address == "203.0.113.7"
    # Someone else, elsewhere, is not affected.
    other = APIClient(REMOTE_ADDR="198.51.100.9")
    assert other.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {valid}").status_code == 200
