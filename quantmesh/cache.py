"""Django's Redis cache with one client, and so one connection pool, per process.

Why: Django makes a cache object per request context (asgiref's Local), and each made its own
connection pool, so every request opened a TCP connection to Redis and ran redis-py's handshake
(which reads the package's metadata from disk): several milliseconds of a request that otherwise
costs a few.
"""

from __future__ import annotations

import threading
from typing import ClassVar

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property


class ProcessRedisCache(RedisCache):
    _clients: ClassVar[dict[str, RedisCacheClient]] = {}
    _lock = threading.Lock()

    @cached_property
    def _cache(self) -> RedisCacheClient:
        key = repr((self._servers, sorted(self._options.items())))
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._class(self._servers, **self._options)
            return self._clients[key]
