"""Versions in Redis that tell each portal process whether what it keeps between requests is current.

Apps keep per-process copies of hot reads (a bearer token with its user: accounts/auth_cache.py; a
user's entitlements: billing/entitlements_cache.py). An entry is used only while the versions it was
read under are still the ones in Redis; a write replaces the version once it commits, so every
process reads afresh on its next request. Versions are read *before* the database, so a write
committing in between leaves the entry under the old version, never a new version over old data.

A version is a random token, not a counter: Redis keeps nothing on disk here, and a counter that
restarted at 1 after a restart could match an entry read before it. A missing version (Redis
restarted or the key expired) is created anew, so no entry matches it. While Redis does not answer,
read() says None and nothing is kept.

Within a request (request_memo) each key is read once: authentication reads every key its user
registered (register_user_key) in the same round trip, so later reads of the request cost nothing.
A version replaced by this request is seen by it at once. That read may also count the request
against a rate limit (CountIf), but only if the kept entry it checks is current: a revoked token
counts nothing against its user's rate, and the API saves a round trip per request.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from quantmesh import counters
from quantmesh.cache import redis_client

logger = logging.getLogger(__name__)

TTL_SECONDS = 24 * 3600

# Formats of per-user keys ("...{user_id}") and keys everyone depends on, read together for a user.
_user_key_formats: list[str] = []
_shared_keys: list[str] = []

_request_memo: ContextVar[dict[str, str] | None] = ContextVar("qm_versions_memo", default=None)


def register_user_key(key_format: str) -> None:
    if key_format not in _user_key_formats:
        _user_key_formats.append(key_format)


def register_shared_key(key: str) -> None:
    if key not in _shared_keys:
        _shared_keys.append(key)


def user_keys(user_id: int) -> list[str]:
    return [key_format.format(user_id=user_id) for key_format in _user_key_formats] + _shared_keys


@contextlib.contextmanager
def request_memo():
    token = _request_memo.set({})
    try:
        yield
    finally:
        _request_memo.reset(token)


@dataclass(frozen=True)
class CountIf:
    """Make `count` in the same round trip, if `key`'s version is `expected`."""

    key: str
    expected: str
    count: counters.Count


# KEYS: n version keys, then the count's keys; ARGV: n, the versions' lifetime, n fresh versions for
# keys that have none, then (when counting) the index of the key that must match, its expected
# version and the count's arguments. Returns the n versions, then the count's two figures if made.
_READ_LUA = (
    counters.BUMP_READING_LUA
    + """
local n = tonumber(ARGV[1])
local found = {}
for i = 1, n do
  local version = redis.call('GET', KEYS[i])
  if not version then
    version = ARGV[2 + i]
    redis.call('SET', KEYS[i], version, 'EX', ARGV[2])
  end
  found[i] = version
end
if #KEYS > n and found[tonumber(ARGV[3 + n])] == ARGV[4 + n] then
  local counted = bump_reading(KEYS[n + 1], KEYS[n + 2], ARGV[5 + n], ARGV[6 + n])
  found[n + 1] = counted[1]
  found[n + 2] = counted[2]
end
return found
"""
)


def read(keys: Iterable[str], *, user_id: int | None = None) -> tuple[str, ...] | None:
    """The current versions of `keys` in their order, or None: keep nothing. With `user_id`, every
    key registered for that user is read in the same round trip, for the rest of the request."""
    return read_counting(keys, user_id=user_id)[0]


def read_counting(
    keys: Iterable[str], *, user_id: int | None = None, count_if: CountIf | None = None
) -> tuple[tuple[str, ...] | None, tuple[int, int] | None]:
    """read(), and the figures of `count_if`'s count if it was made (only when some key had to be
    read from Redis and `count_if.key`'s version matched)."""
    keys = tuple(keys)
    memo = _request_memo.get()
    known = memo if memo is not None else {}
    wanted = [key for key in keys if key not in known]
    counted = None
    if wanted:
        if user_id is not None:
            wanted += [key for key in user_keys(user_id) if key not in known and key not in wanted]
        if count_if is not None and count_if.key not in wanted:
            count_if = None
        fetched = _fetch(wanted, count_if)
        if fetched is None:
            return None, None
        found, counted = fetched
        known = {**known, **found}
        if memo is not None:
            memo.update(found)
    return tuple(known[key] for key in keys), counted


def _fetch(keys: list[str], count_if: CountIf | None):
    if not settings.REDIS_URL:  # one process (the embedded default): nothing is kept between requests
        return None
    script_keys, args = list(keys), [len(keys), TTL_SECONDS, *(uuid.uuid4().hex for _ in keys)]
    if count_if is not None:
        script_keys += count_if.count.script_keys()
        args += [keys.index(count_if.key) + 1, count_if.expected, *count_if.count.script_args()]
    try:
        replies = _script(settings.REDIS_URL)(keys=script_keys, args=args)
    except Exception:  # noqa: BLE001 (any Redis failure means: read the database)
        return None
    found = {key: reply.decode() for key, reply in zip(keys, replies, strict=False)}
    counted = (int(replies[len(keys)]), int(replies[len(keys) + 1])) if len(replies) > len(keys) else None
    return found, counted


@functools.cache
def _script(url: str):
    return redis_client(url).register_script(_READ_LUA)


def replace(key: str) -> None:
    """A new version: every entry read under the old one is stale, in every process."""
    if not settings.REDIS_URL:
        return
    version = uuid.uuid4().hex
    try:
        redis_client(settings.REDIS_URL).set(key, version, ex=TTL_SECONDS)
    except Exception:  # noqa: BLE001
        # Other processes keep their entries until their own bound (seconds) at most; while Redis does
        # not answer they keep nothing, and a restarted Redis has lost every version.
        logger.warning("version %s not replaced: Redis did not answer", key)
        version = None
    memo = _request_memo.get()
    if memo is not None:
        if version is None:
            memo.pop(key, None)
        else:
            memo[key] = version


def replace_on_commit(key: str) -> None:
    """Replace `key` once the surrounding transaction commits (at once outside one): other processes
    drop their entries once the write is visible to them, and a rollback changes nothing."""
    transaction.on_commit(functools.partial(replace, key))


class VersionsMemoMiddleware:
    """Each version read at most once a request (request_memo). Sync only, near the end of the chain
    (see settings.MIDDLEWARE)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with request_memo():
            return self.get_response(request)
