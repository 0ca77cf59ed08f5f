"""Entitlements kept across requests in each portal process, and dropped everywhere on a write.

Why: every authenticated request asks what its user may do, and reading the subscription and plan
was about half of an API read's own cost. Why it cannot serve a stale plan: an entry is used only
while the user's version and the plan catalogue's version in Redis are the ones it was read under.
A subscription or plan write replaces the version once it commits (billing/receivers.py), so every
process reads afresh on its next request; the version is read *before* the database, so a write
committing in between leaves the entry under the old version, never a new version over old data.

A version is a random token, not a counter: Redis keeps nothing on disk here, and a counter that
restarted at 1 after a restart could match an entry read before it. A missing version (Redis
restarted or the key expired) is created anew, so no entry matches it. Without a shared Redis, or
while it does not answer, nothing is kept between requests and every request reads the database.
An entry also ends when the rights it holds end by the clock (a trial, a payment grace) and after
QM_ENTITLEMENTS_CACHE_SECONDS, a bound on writes that bypass the ORM (SQL typed by hand).
"""

from __future__ import annotations

import logging
import time
import uuid

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

PLANS_KEY = "qm:entitlements:plans"
VERSION_TTL_SECONDS = 24 * 3600
MAX_ENTRIES = 10_000

# user id -> (versions, monotonic deadline, Entitlements)
_entries: dict[int, tuple[tuple[str, str], float, object]] = {}


def _user_key(user_id: int) -> str:
    return f"qm:entitlements:user:{user_id}"


def enabled() -> bool:
    return bool(settings.REDIS_URL) and settings.QM_ENTITLEMENTS_CACHE_SECONDS > 0


def versions(user_id: int) -> tuple[str, str] | None:
    """The user's and the catalogue's current versions (one round trip), or None: do not cache."""
    keys = (_user_key(user_id), PLANS_KEY)
    try:
        found = cache.get_many(keys)
        if len(found) < len(keys):
            for key in keys:
                if key not in found:
                    cache.add(key, uuid.uuid4().hex, timeout=VERSION_TTL_SECONDS)
            found = cache.get_many(keys)
    except Exception:  # noqa: BLE001 (any Redis failure means: read the database)
        return None
    if len(found) < len(keys):
        return None
    return found[keys[0]], found[keys[1]]


def lookup(user_id: int, current: tuple[str, str]):
    entry = _entries.get(user_id)
    if entry is None or entry[0] != current or time.monotonic() >= entry[1]:
        return None
    return entry[2]


def store(user_id: int, current: tuple[str, str], rights, *, valid_seconds: float | None) -> None:
    seconds = settings.QM_ENTITLEMENTS_CACHE_SECONDS
    if valid_seconds is not None:
        seconds = min(seconds, valid_seconds)
    if seconds <= 0:
        return
    if len(_entries) >= MAX_ENTRIES:
        _entries.clear()
    _entries[user_id] = (current, time.monotonic() + seconds, rights)


def forget_local() -> None:
    _entries.clear()


def bump(*, user_id: int | None) -> None:
    """A new version for one user (None: for the plan catalogue, which every entry depends on)."""
    key = PLANS_KEY if user_id is None else _user_key(user_id)
    try:
        cache.set(key, uuid.uuid4().hex, timeout=VERSION_TTL_SECONDS)
    except Exception:  # noqa: BLE001
        # Other processes keep their entries until QM_ENTITLEMENTS_CACHE_SECONDS at most; while Redis
        # does not answer they cache nothing, and a restarted Redis has lost every version.
        logger.warning("entitlements version for %s not replaced: Redis did not answer", key)
