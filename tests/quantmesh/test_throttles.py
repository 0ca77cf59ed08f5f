"""The per-user API rate holds under concurrency: a count, not a read-modify-write of a history."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from quantmesh.api.throttles import PerUserRateThrottle

USER = SimpleNamespace(pk=4242, is_authenticated=True)


def _request(user=USER):
    return SimpleNamespace(user=user, META={"REMOTE_ADDR": "127.0.0.1"})


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
