"""Counters shared by every process, for rate limits: one atomic Redis command per count.

Why not the cache API: a limit kept as "read the history, append, write it back" lets concurrent
requests all read the same history and all pass (40 concurrent calls against a limit of 10 passed
up to 40), and Django's RedisCache.incr is two round trips. INCR is atomic and one round trip: one
script (INCRBY, EXPIRE and the read of another counter), since building a redis-py pipeline copies
its table of reply parsers every time, a cost in every API request.
Without REDIS_URL (the embedded default: one process) the in-memory cache counts under its lock.
"""

from __future__ import annotations

import functools

import redis
from django.conf import settings
from django.core.cache import cache

PREFIX = "qm:counter:"


# KEYS: the counter, and optionally another to read; ARGV: the step, the lifetime in seconds (-1: kept).
_BUMP_READING = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) >= 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
local other = 0
if KEYS[2] then other = tonumber(redis.call('GET', KEYS[2]) or '0') end
return {count, other}
"""


@functools.cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)


@functools.cache
def _bump_reading_script(url: str):
    return _redis(url).register_script(_BUMP_READING)  # EVALSHA, loaded again after a Redis restart


def bump(key: str, *, timeout: int | None, by: int = 1) -> int:
    """Add `by` to the counter and return its new value; it disappears `timeout` seconds after its
    last change (None: kept)."""
    return bump_reading(key, None, timeout=timeout, by=by)[0]


def bump_reading(key: str, other: str | None, *, timeout: int | None, by: int = 1) -> tuple[int, int]:
    """bump(), and the value of the `other` counter read in the same round trip."""
    if settings.REDIS_URL:
        keys = [PREFIX + key] if other is None else [PREFIX + key, PREFIX + other]
        count, other_count = _bump_reading_script(settings.REDIS_URL)(
            keys=keys, args=[by, -1 if timeout is None else timeout]
        )
        return count, other_count
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
