"""Entitlements kept across requests in each portal process, and dropped everywhere on a write.

Why: every authenticated request asks what its user may do, and reading the subscription and plan
was about half of an API read's own cost. Why it cannot serve a stale plan: an entry is used only
while the user's version and the plan catalogue's version (quantmesh/versions.py) are the ones it
was read under; a subscription or plan write replaces them once it commits (billing/receivers.py).
An entry also ends when the rights it holds end by the clock (a trial, a payment grace) and after
QM_ENTITLEMENTS_CACHE_SECONDS, a bound on writes that bypass the ORM (SQL typed by hand).
"""

from __future__ import annotations

import time

from django.conf import settings

from quantmesh import versions

PLANS_KEY = "qm:entitlements:plans"
USER_KEY = "qm:entitlements:user:{user_id}"
MAX_ENTRIES = 10_000

versions.register_user_key(USER_KEY)
versions.register_shared_key(PLANS_KEY)

# user id -> (versions, monotonic deadline, Entitlements)
_entries: dict[int, tuple[tuple[str, str], float, object]] = {}


def enabled() -> bool:
    return bool(settings.REDIS_URL) and settings.QM_ENTITLEMENTS_CACHE_SECONDS > 0


def current_versions(user_id: int) -> tuple[str, str] | None:
    """The user's and the catalogue's current versions, or None: do not cache."""
    return versions.read((USER_KEY.format(user_id=user_id), PLANS_KEY), user_id=user_id)


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


def bump_on_commit(*, user_id: int | None) -> None:
    """A new version for one user (None: for the plan catalogue, which every entry depends on)."""
    versions.replace_on_commit(PLANS_KEY if user_id is None else USER_KEY.format(user_id=user_id))
