"""Versions (quantmesh/versions.py): one round trip to Redis for everything a request's user needs,
and a version this request replaced is seen by it at once."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from quantmesh import versions


@pytest.fixture
def redis_reads(monkeypatch):
    calls = []
    get_many = cache.get_many

    def counted(keys, *args, **kwargs):
        calls.append(tuple(keys))
        return get_many(keys, *args, **kwargs)

    monkeypatch.setattr(cache, "get_many", counted)
    return calls


def test_a_request_reads_its_users_versions_once(redis_reads):
    user_keys = versions.user_keys(7)
    assert len(user_keys) >= 3  # the auth, entitlements and plan catalogue versions
    cache.delete_many(user_keys)
    with versions.request_memo():
        first = versions.read(user_keys[:1], user_id=7)
        redis_reads.clear()
        rest = versions.read(user_keys[1:])
        assert redis_reads == []
        assert versions.read(user_keys) == first + rest
    assert len(set(first + rest)) == len(user_keys)  # each key its own random version


def test_a_replaced_version_is_seen_by_the_same_request():
    key = versions.user_keys(8)[0]
    with versions.request_memo():
        before = versions.read([key])
        versions.replace(key)
        after = versions.read([key])
        assert after != before and after == (cache.get(key),)


def test_without_a_request_every_read_asks_redis(redis_reads):
    key = versions.user_keys(9)[0]
    versions.read([key])
    versions.read([key])
    assert len(redis_reads) >= 2
