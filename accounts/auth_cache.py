"""Bearer tokens with their users, and users' second-factor state, kept across requests in each
portal process and dropped everywhere on a write.

Why: every API call authenticates, and reading the token with its user and the second factor was
most of a cheap read's own cost. An entry is used only while its user's auth version
(quantmesh/versions.py) is the one it was read under. Whatever decides whether a token opens the
account replaces that version once it commits (accounts/receivers.py): a token saved or deleted
(revoked, created), the tokens revoked all at once (a new password), the user saved or deleted (made
inactive, a new e-mail), a second-factor device saved or deleted. A token that expires ends by the
clock (the caller checks), and every entry after QM_AUTH_CACHE_SECONDS, a bound on writes that
bypass the ORM.

Unknown tokens are never kept (the guessing throttle counts them), nor is anything read inside a
transaction, which may yet be rolled back. Callers get their own copies of a token and its user, so
a request that changes its user changes nobody else's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection
from django.db.models.base import ModelState

from quantmesh import versions

from .models import ApiToken

AUTH_KEY = "qm:auth:user:{user_id}"
MAX_ENTRIES = 10_000

versions.register_user_key(AUTH_KEY)


class _Entry(NamedTuple):
    user_id: int
    version: str
    deadline: float
    value: Any


# ("token", key hash) -> the token with its user; ("two_factor", user id) -> bool
_entries: dict[tuple[str, object], _Entry] = {}


def enabled() -> bool:
    return bool(settings.REDIS_URL) and settings.QM_AUTH_CACHE_SECONDS > 0


def token_get(key_hash: str) -> ApiToken | None:
    """The token whose hash is `key_hash`, with its user, or None."""
    if not enabled() or connection.in_atomic_block:
        return _token_read(key_hash)
    token = _lookup(("token", key_hash))
    if token is not None:
        return _copy(token)
    token = _token_read(key_hash)
    if token is None:
        return None
    # The user is known only now: read its version, then the token again, so that what is kept was
    # read after the version (quantmesh/versions.py).
    current = _current(token.user_id)
    if current is None:
        return token
    token = _token_read(key_hash)
    if token is None:
        return None
    _store(("token", key_hash), token.user_id, current, token)
    return _copy(token)


def two_factor_get(user_id: int, read: Callable[[], bool]) -> bool:
    """Whether the user has a second factor, as read() says, kept under the user's auth version."""
    if not enabled() or connection.in_atomic_block:
        return read()
    found = _lookup(("two_factor", user_id))
    if found is not None:
        return found
    current = _current(user_id)
    value = read()
    if current is not None:
        _store(("two_factor", user_id), user_id, current, value)
    return value


def last_used_noted(key_hash: str, when) -> None:
    """The kept token's last use, so the coarse write is not repeated on every request."""
    entry = _entries.get(("token", key_hash))
    if entry is not None:
        entry.value.last_used_at = when


def forget_local() -> None:
    _entries.clear()


def bump_on_commit(*, user_id: int) -> None:
    versions.replace_on_commit(AUTH_KEY.format(user_id=user_id))


def _current(user_id: int) -> str | None:
    found = versions.read((AUTH_KEY.format(user_id=user_id),), user_id=user_id)
    return None if found is None else found[0]


def _lookup(key):
    entry = _entries.get(key)
    if entry is None or time.monotonic() >= entry.deadline or _current(entry.user_id) != entry.version:
        return None
    return entry.value


def _store(key, user_id: int, version: str, value) -> None:
    if len(_entries) >= MAX_ENTRIES:
        _entries.clear()
    _entries[key] = _Entry(user_id, version, time.monotonic() + settings.QM_AUTH_CACHE_SECONDS, value)


def _token_read(key_hash: str) -> ApiToken | None:
    return ApiToken.objects.select_related("user").filter(key_hash=key_hash).first()


def _copy(token: ApiToken) -> ApiToken:
    user = _copy_row(token.user)
    token = _copy_row(token)
    token.user = user
    return token


def _copy_row(row):
    copy = row.__class__.__new__(row.__class__)
    copy.__dict__ = {**row.__dict__, "_state": ModelState()}
    copy._state.adding = False
    copy._state.db = row._state.db
    return copy
