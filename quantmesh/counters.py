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
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from quantmesh.cache import redis_client

PREFIX = "qm:counter:"

# A Lua function other scripts may carry too (quantmesh/versions.py counts within its read).
BUMP_READING_LUA = """
local function bump_reading(counter, other, by, timeout)
  local count = redis.call('INCRBY', counter, by)
  if tonumber(timeout) >= 0 then redis.call('EXPIRE', counter, timeout) end
  local other_count = 0
  if other then other_count = tonumber(redis.call('GET', other) or '0') end
  return {count, other_count}
end
"""


@dataclass(frozen=True)
class Count:
    """One bump_reading() to make, for a caller that makes it in another round trip of its own."""

    key: str
    other: str | None
    timeout: int | None
    by: int = 1

    def script_keys(self) -> list[str]:
        return [PREFIX + self.key] if self.other is None else [PREFIX + self.key, PREFIX + self.other]

    def script_args(self) -> list[int]:
        return [self.by, -1 if self.timeout is None else self.timeout]


@functools.cache
def _script(url: str):
    # EVALSHA, loaded again after a Redis restart.
    return redis_client(url).register_script(
        BUMP_READING_LUA + "return bump_reading(KEYS[1], KEYS[2], ARGV[1], ARGV[2])"
    )


def bump(key: str, *, timeout: int | None, by: int = 1) -> int:
    """Add `by` to the counter and return its new value; it disappears `timeout` seconds after its
    last change (None: kept)."""
    return bump_reading(key, None, timeout=timeout, by=by)[0]


def bump_reading(key: str, other: str | None, *, timeout: int | None, by: int = 1) -> tuple[int, int]:
    """bump(), and the value of the `other` counter read in the same round trip."""
    if settings.REDIS_URL:
        count = Count(key, other, timeout, by)
        found, other_count = _script(settings.REDIS_URL)(keys=count.script_keys(), args=count.script_args())
        return found, other_count
    cache.add(key, 0, timeout=timeout)
    try:
        count = cache.incr(key, by)
    except ValueError:  # expired between add and incr
        cache.set(key, by, timeout=timeout)
        count = by
    return count, value(other) if other is not None else 0


def value(key: str) -> int:
    if settings.REDIS_URL:
        return int(redis_client(settings.REDIS_URL).get(PREFIX + key) or 0)
    return cache.get(key, 0)


def delete(key: str) -> None:
    if settings.REDIS_URL:
        redis_client(settings.REDIS_URL).delete(PREFIX + key)
    else:
        cache.delete(key)
