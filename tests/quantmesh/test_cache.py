"""The Redis cache keeps one connection pool per process, whichever thread or request context asks."""

from __future__ import annotations

import threading

import pytest
from django.core.cache import caches

pytestmark = pytest.mark.services


def _client_in_a_new_thread():
    seen = []
    thread = threading.Thread(target=lambda: seen.append(caches["default"]._cache))
    thread.start()
    thread.join()
    return seen[0]


def test_every_thread_shares_one_client_and_its_connections(settings):
    if "Redis" not in settings.CACHES["default"]["BACKEND"]:
        pytest.skip("the cache is not Redis (no REDIS_URL)")
    first, second = _client_in_a_new_thread(), _client_in_a_new_thread()
    assert first is second
    connections = len(first.get_client(write=True).client_list())
    for _ in range(20):
        assert _client_in_a_new_thread().get_client(write=True).ping()
    assert len(first.get_client(write=True).client_list()) <= connections + 1


def test_every_command_uses_the_same_redis_client(settings):
    """Django built a redis-py client for every command, copying its table of reply parsers each time."""
    if "Redis" not in settings.CACHES["default"]["BACKEND"]:
        pytest.skip("the cache is not Redis (no REDIS_URL)")
    client = _client_in_a_new_thread()
    assert client.get_client(write=True) is _client_in_a_new_thread().get_client(write=True)
    assert client.get_client("a key") is client.get_client("another key")
