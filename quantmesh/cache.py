"""Django's Redis cache with one client, and so one connection pool, per process.

Why: Django makes a cache object per request context (asgiref's Local), and each made its own
connection pool, so every request opened a TCP connection to Redis and ran redis-py's handshake
(which reads the package's metadata from disk): several milliseconds of a request that otherwise
costs a few. And Django's client built a redis-py client object for every command, which copies
redis-py's table of ~170 reply parsers: about a third of a cache read's own cost.
"""

from __future__ import annotations

import functools
import threading
from typing import ClassVar

import redis
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property


class ProcessRedisCacheClient(RedisCacheClient):
    """One redis-py client per connection pool (a redis-py client is safe to share between threads)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients_by_pool: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients_by_pool.get(id(pool))
        if client is None:
            client = self._clients_by_pool.setdefault(id(pool), self._client(connection_pool=pool))
        return client


class ProcessRedisCache(RedisCache):
    _clients: ClassVar[dict[str, RedisCacheClient]] = {}
    _lock = threading.Lock()

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = ProcessRedisCacheClient

    @cached_property
    def _cache(self) -> RedisCacheClient:
        key = repr((self._servers, sorted(self._options.items())))
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._class(self._servers, **self._options)
            return self._clients[key]


@functools.cache
def redis_client(url: str) -> redis.Redis:
    """A plain redis-py client for `url`, one per process, for what the cache API cannot say in one
    round trip (counters, versions: Lua scripts)."""
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
