"""Versions (quantmesh/versions.py): one round trip to Redis for everything a request's user needs,
a version this request replaced is seen by it at once, and a count rides along only while what it
checks is current."""

from __future__ import annotations

import pytest
from django.conf import settings

from quantmesh import counters, versions
from quantmesh.cache import redis_client

pytestmark = pytest.mark.services


@pytest.fixture(autouse=True)
def _redis_only():
    if not settings.REDIS_URL:
        pytest.skip("versions live in Redis (no REDIS_URL)")


@pytest.fixture
def round_trips(monkeypatch):
    calls = []
    fetch = versions._fetch

    def counted(keys, count_if):
        calls.append(tuple(keys))
        return fetch(keys, count_if)

    monkeypatch.setattr(versions, "_fetch", counted)
    return calls


def test_a_request_reads_its_users_versions_once(round_trips):
    user_keys = versions.user_keys(7)
    assert len(user_keys) >= 3  # the auth, entitlements and plan catalogue versions
    redis_client(settings.REDIS_URL).delete(*user_keys)
    with versions.request_memo():
        first = versions.read(user_keys[:1], user_id=7)
        assert round_trips == [tuple(user_keys)]
        rest = versions.read(user_keys[1:])
        assert versions.read(user_keys) == first + rest
        assert len(round_trips) == 1
    assert len(set(first + rest)) == len(user_keys)  # each key its own random version


def test_a_replaced_version_is_seen_by_the_same_request():
    key = versions.user_keys(8)[0]
    with versions.request_memo():
        before = versions.read([key])
        versions.replace(key)
        after = versions.read([key])
        assert after != before and after == (redis_client(settings.REDIS_URL).get(key).decode(),)


def test_without_a_request_every_read_asks_redis(round_trips):
    key = versions.user_keys(9)[0]
    assert versions.read([key]) == versions.read([key])
    assert len(round_trips) == 2


def test_a_count_is_made_only_while_the_checked_version_is_current():
    key = versions.user_keys(10)[0]
    counters.delete("versions-test")
    count = counters.Count("versions-test", "versions-test-before", timeout=60)
    (current,) = versions.read([key])
    found, counted = versions.read_counting([key], count_if=versions.CountIf(key, current, count))
    assert found == (current,) and counted == (1, 0)
    versions.replace(key)  # what the version guarded changed: a revoked token counts nothing
    found, counted = versions.read_counting([key], count_if=versions.CountIf(key, current, count))
    assert found != (current,) and counted is None
    assert counters.value("versions-test") == 1
