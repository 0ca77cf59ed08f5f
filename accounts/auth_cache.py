"""Bearer tokens with their users, and users' second-factor state, kept across requests in each
portal process and dropped everywhere on a write.

Why: every API call authenticates, and reading the token with its user and the second factor was
most of a cheap read's own cost. An entry is used only while its user's auth version
(quantmesh/versions.py) is the one it was read under. Whatever decides whether a token opens the
account replaces that version once it commits (accounts/receivers.py): a token saved or deleted
(revoked, created), the tokens revoked all at once (a new password), the user saved or deleted (made
inactive, a new e-mail), a second-factor device saved or deleted. A kept token ends when it expires,
and every entry after QM_AUTH_CACHE_SECONDS, a bound on writes that bypass the ORM.

The version check may also count the request against its user's API rate in the same round trip
(token_get's `count`), only if the entry is current; the token then carries the figures
(`request_counted`) for the throttle, which makes no round trip of its own.

Only tokens that open their account are kept; unknown ones (the guessing throttle counts them),
revoked or expired ones and a disabled account's are read each time. Nothing read inside a
transaction is kept: it may yet be rolled back. Callers get their own copies of a token and its user, so
a request that changes its user changes nobody else's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection
from django.db.models.base import ModelState
from django.utils import timezone

from quantmesh import counters, versions

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
# key hash -> the last use this process recorded (last_used_claim)
_last_used_claims: dict[str, datetime] = {}
_last_used_lock = threading.Lock()


def enabled() -> bool:
    return bool(settings.REDIS_URL) and settings.QM_AUTH_CACHE_SECONDS > 0


def token_get(key_hash: str, *, count: Callable[[int], counters.Count | None] | None = None) -> ApiToken | None:
    """The token whose hash is `key_hash`, with its user, or None. `count(user_id)`: a count to make
    with the version check of a kept token; its figures come as the token's `request_counted`
    (key, (count, other)), or that attribute is absent."""
    if not enabled() or connection.in_atomic_block:
        return _token_read(key_hash)
    token, counted = _lookup(("token", key_hash), count)
    if token is not None:
        token = _copy(token)
        if counted is not None:
            token.request_counted = counted
        return token
    token = _token_read(key_hash)
    if token is None or not _opens_account(token):
        return token
    # The user is known only now: read its version, then the token again, so that what is kept was
    # read after the version (quantmesh/versions.py).
    current = _current(token.user_id)
    if current is None:
        return token
    token = _token_read(key_hash)
    if token is None or not _opens_account(token):
        return token
    valid_seconds = (token.expires_at - timezone.now()).total_seconds()
    _store(("token", key_hash), token.user_id, current, token, valid_seconds=valid_seconds)
    return _copy(token)


def _opens_account(token: ApiToken) -> bool:
    """Only such tokens are kept, and until they expire at the latest: a kept token always opens its
    account, so a count made with its check (token_get's `count`) is always the account's own."""
    return token.revoked_at is None and token.expires_at > timezone.now() and token.user.is_active


def two_factor_get(user_id: int, read: Callable[[], bool]) -> bool:
    """Whether the user has a second factor, as read() says, kept under the user's auth version."""
    if not enabled() or connection.in_atomic_block:
        return read()
    found, _ = _lookup(("two_factor", user_id))
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


def last_used_claim(key_hash: str, now: datetime, *, resolution: timedelta) -> bool:
    """Whether this request records the token's use: the first one in this process once `resolution`
    has passed since the use it last recorded. Without it every request that found the recorded use
    stale wrote it, so a burst on a token (its first use, or each minute under load) became a burst of
    UPDATEs contending for the database's write lock; on SQLite some waited out its busy timeout."""
    with _last_used_lock:
        last = _last_used_claims.get(key_hash)
        if last is not None and now - last <= resolution:
            return False
        if len(_last_used_claims) >= MAX_ENTRIES:
            _last_used_claims.clear()
        _last_used_claims[key_hash] = now
        return True


def forget_local() -> None:
    _entries.clear()
    _last_used_claims.clear()


def bump_on_commit(*, user_id: int) -> None:
    versions.replace_on_commit(AUTH_KEY.format(user_id=user_id))


def _current(user_id: int) -> str | None:
    found = versions.read((AUTH_KEY.format(user_id=user_id),), user_id=user_id)
    return None if found is None else found[0]


def _lookup(key, count: Callable[[int], counters.Count | None] | None = None):
    """The entry's value if it is current (else None), and the figures of the count if one was made."""
    entry = _entries.get(key)
    if entry is None or time.monotonic() >= entry.deadline:
        return None, None
    auth_key = AUTH_KEY.format(user_id=entry.user_id)
    wanted = count(entry.user_id) if count is not None else None
    count_if = versions.CountIf(auth_key, entry.version, wanted) if wanted is not None else None
    found, counted = versions.read_counting((auth_key,), user_id=entry.user_id, count_if=count_if)
    if found is None or found[0] != entry.version:
        return None, None
    return entry.value, None if counted is None else (wanted.key, counted)


def _store(key, user_id: int, version: str, value, *, valid_seconds: float | None = None) -> None:
    seconds = (
        settings.QM_AUTH_CACHE_SECONDS if valid_seconds is None else min(settings.QM_AUTH_CACHE_SECONDS, valid_seconds)
    )
    if len(_entries) >= MAX_ENTRIES:
        _entries.clear()
    _entries[key] = _Entry(user_id, version, time.monotonic() + seconds, value)


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
