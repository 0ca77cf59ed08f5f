"""The per-user API rate holds under concurrency: a count, not a read-modify-write of a history."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from quantmesh.api.throttles import PerUserRateThrottle

USER = SimpleNamespace(pk=4242, is_authenticated=True)


def _request(user=USER):
    return SimpleNamespace(user=user, auth=None, META={"REMOTE_ADDR": "127.0.0.1"})


def _allowed_by_concurrent_callers(callers: int) -> int:
    start = threading.Barrier(callers)
    allowed = []

    def call() -> None:
        start.wait()
        allowed.append(PerUserRateThrottle().allow_request(_request(), None))

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(allowed)


@pytest.mark.services
def test_concurrent_requests_never_pass_the_limit(settings):
    settings.QM_API_USER_RATE = "10/minute"
    assert _allowed_by_concurrent_callers(40) == 10
    assert not PerUserRateThrottle().allow_request(_request(), None)


def test_a_refused_request_does_not_count_and_says_when_to_retry(settings):
    settings.QM_API_USER_RATE = "3/minute"
    throttle = PerUserRateThrottle()
    assert [throttle.allow_request(_request(), None) for _ in range(5)] == [True, True, True, False, False]
    assert 0 < throttle.wait() <= 60
    other = SimpleNamespace(pk=4243, is_authenticated=True)
    assert PerUserRateThrottle().allow_request(_request(other), None)  # each user has their own count


def test_the_window_slides_and_the_wait_it_names_is_enough(settings, monkeypatch):
    settings.QM_API_USER_RATE = "10/minute"
    clock = [1000 * 60 + 59.0]  # the last second of a fixed window
    monkeypatch.setattr("quantmesh.api.throttles.time.time", lambda: clock[0])
    throttle = PerUserRateThrottle()
    assert sum(throttle.allow_request(_request(), None) for _ in range(11)) == 10
    clock[0] = 1001 * 60 + 6.0  # 10 % into the next window: the last minute still holds 9 of those 10
    assert [throttle.allow_request(_request(), None) for _ in range(2)] == [True, False]
    assert throttle.wait() == pytest.approx(6.0)
    clock[0] += 5.9
    assert not throttle.allow_request(_request(), None)
    clock[0] += 0.2
    assert throttle.allow_request(_request(), None)


@pytest.mark.django_db(transaction=True)
def test_a_bearer_request_is_counted_with_its_token_check(settings, monkeypatch):
    """Through the API: a kept token's request is counted in the round trip that checks the token
    (the throttle makes none of its own), the limit holds exactly, and a revoked token's requests
    count nothing against its owner's rate."""
    # Inline: factories and services need the database this test's marker sets up.
    from rest_framework.test import APIClient

    from accounts import auth_cache
    from accounts.models import ApiToken
    from accounts.services import api_token_create, api_token_revoke
    from quantmesh import counters
    from tests.factories import UserFactory

    if not settings.REDIS_URL:
        pytest.skip("tokens are kept between requests only with Redis")
    auth_cache.forget_local()
    settings.QM_API_USER_RATE = "10/minute"
    user = UserFactory()
    revoked, raw_revoked = api_token_create(user=user)
    _, raw = api_token_create(user=user)

    def get(token: str) -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client.get("/api/auth/me").status_code

    assert get(raw_revoked) == 200  # now kept
    api_token_revoke(token=revoked)
    assert [get(raw_revoked) for _ in range(5)] == [401] * 5

    throttle_round_trips = []
    bump_reading = counters.bump_reading
    monkeypatch.setattr(
        counters, "bump_reading", lambda *a, **k: throttle_round_trips.append(a) or bump_reading(*a, **k)
    )
    assert [get(raw) for _ in range(9)] == [200] * 9  # 10 with the revoked token's one good request
    assert len(throttle_round_trips) == 1  # the token's first use, before it was kept
    assert get(raw) == 429
    assert ApiToken.objects.filter(user=user).count() == 2
    auth_cache.forget_local()
