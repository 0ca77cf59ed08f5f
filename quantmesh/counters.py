"""Counters shared by every process, for rate limits: one atomic Redis command per count.

Why not the cache API: a limit kept as "read the history, append, write it back" lets concurrent
requests all read the same history and all pass (40 concurrent calls against a limit of 10 passed
up to 40), and Django's RedisCache.incr is two round trips. INCR is atomic and one round trip.
Without REDIS_URL (the embedded default: one process) the in-memory cache counts under its lock.
"""

from __future__ import annotations

import functools

import redis
from django.conf import settings
from django.core.cache import cache

PREFIX = "qm:counter:"


@functools.cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)


def bump(key: str, *, timeout: int | None, by: int = 1) -> int:
    """Add `by` to the counter and return its new value; it disappears `timeout` seconds after its
    last change (None: kept)."""
    return bump_reading(key, None, timeout=timeout, by=by)[0]


def bump_reading(key: str, other: str | None, *, timeout: int | None, by: int = 1) -> tuple[int, int]:
    """bump(), and the value of the `other` counter read in the same round trip."""
    if settings.REDIS_URL:
        pipe = _redis(settings.REDIS_URL).pipeline(transaction=False)
        pipe.incrby(PREFIX + key, by)
        if timeout is not None:
            pipe.expire(PREFIX + key, timeout)
        if other is not None:
            pipe.get(PREFIX + other)
        replies = pipe.execute()
        return replies[0], int(replies[-1] or 0) if other is not None else 0
    cache.add(key, 0, timeout=timeout)
    try:
        count = cache.incr(key, by)
    except ValueError:  # expired between add and incr
        cache.set(key, by, timeout=timeout)
        count = by
    return count, value(other) if other is not None else 0


def value(key: str) -> int:
    if settings.REDIS_URL:
        return int(_redis(settings.REDIS_URL).get(PREFIX + key) or 0)
    return cache.get(key, 0)


def delete(key: str) -> None:
    if settings.REDIS_URL:
        _redis(settings.REDIS_URL).delete(PREFIX + key)
    else:
        cache.delete(key)
