"""Versions in Redis that tell each portal process whether what it keeps between requests is current.

Apps keep per-process copies of hot reads (a bearer token with its user: accounts/token_cache.py; a
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
A version replaced by this request is seen by it at once.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from functools import partial

from django.core.cache import cache
from django.db import transaction

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


def read(keys: Iterable[str], *, user_id: int | None = None) -> tuple[str, ...] | None:
    """The current versions of `keys` in their order, or None: keep nothing. With `user_id`, every
    key registered for that user is read in the same round trip, for the rest of the request."""
    keys = tuple(keys)
    memo = _request_memo.get()
    known = memo if memo is not None else {}
    wanted = [key for key in keys if key not in known]
    if wanted:
        if user_id is not None:
            wanted += [key for key in user_keys(user_id) if key not in known and key not in wanted]
        found = _fetch(wanted)
        if found is None:
            return None
        known = {**known, **found}
        if memo is not None:
            memo.update(found)
    return tuple(known[key] for key in keys)


def _fetch(keys: list[str]) -> dict[str, str] | None:
    try:
        found = cache.get_many(keys)
        missing = [key for key in keys if key not in found]
        if missing:
            for key in missing:
                cache.add(key, uuid.uuid4().hex, timeout=TTL_SECONDS)
            found.update(cache.get_many(missing))
    except Exception:  # noqa: BLE001 (any Redis failure means: read the database)
        return None
    if len(found) < len(keys):
        return None
    return found


def replace(key: str) -> None:
    """A new version: every entry read under the old one is stale, in every process."""
    version = uuid.uuid4().hex
    try:
        cache.set(key, version, timeout=TTL_SECONDS)
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
    transaction.on_commit(partial(replace, key))


class VersionsMemoMiddleware:
    """Each version read at most once a request (request_memo). Sync only, near the end of the chain
    (see settings.MIDDLEWARE)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with request_memo():
            return self.get_response(request)
