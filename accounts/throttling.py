"""Login throttling shared by the API login, the web login and the admin login, and bearer-token guessing.

Fixed-window counters (quantmesh/counters.py): every attempt per client address, and failed attempts
per address *and* account. Reaching the failure limit locks that account for that address only
(QM_LOGIN_LOCK), whether or not an account exists for the e-mail, so the lock does not reveal
which addresses are registered, and so nobody can lock a customer out from elsewhere. A password
change or reset, or a login that passed the second factor, lifts every lock of the account (each
lock is filed under the account's current generation, which those bump).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from quantmesh import counters


@dataclass(frozen=True)
class LoginBlocked(Exception):
    reason: str  # "ip" or "locked"
    retry_after: int  # seconds


def _email_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def _window(seconds: float) -> tuple[int, int]:
    """The current fixed window's number and the seconds left in it."""
    now = time.time()
    number = int(now // seconds)
    return number, max(1, int((number + 1) * seconds - now + 0.999))


def _pair(ip: str | None, email: str) -> str:
    """The account (at its current generation) as seen from one address."""
    account = _email_key(email)
    generation = counters.value(f"login:gen:{account}")
    return f"{account}:{generation}:{ip or '-'}"


def check_login_allowed(*, ip: str | None, email: str) -> None:
    """Count this attempt against the client's address and refuse it if the address is over its
    limit or this account is locked for this address."""
    locked_until = cache.get(f"login:lock:{_pair(ip, email)}")
    if locked_until and locked_until > time.time():
        raise LoginBlocked("locked", int(locked_until - time.time() + 0.999))
    if ip:
        seconds = settings.QM_LOGIN_IP_WINDOW.total_seconds()
        number, left = _window(seconds)
        if counters.bump(f"login:ip:{ip}:{number}", timeout=int(seconds) + 1) > settings.QM_LOGIN_IP_LIMIT:
            raise LoginBlocked("ip", left)


def record_login_failure(*, ip: str | None, email: str) -> bool:
    """Count a failed attempt for the account from this address; True when this one locked it."""
    pair = _pair(ip, email)
    seconds = settings.QM_LOGIN_ACCOUNT_WINDOW.total_seconds()
    number, _ = _window(seconds)
    failures = counters.bump(f"login:fail:{pair}:{number}", timeout=int(seconds) + 1)
    if failures < settings.QM_LOGIN_ACCOUNT_FAILURES:
        return False
    lock = settings.QM_LOGIN_LOCK.total_seconds()
    cache.set(f"login:lock:{pair}", time.time() + lock, timeout=int(lock) + 1)
    counters.delete(f"login:fail:{pair}:{number}")
    return True


def clear_login_failures(*, ip: str | None, email: str) -> None:
    number, _ = _window(settings.QM_LOGIN_ACCOUNT_WINDOW.total_seconds())
    counters.delete(f"login:fail:{_pair(ip, email)}:{number}")


def lift_locks(*, email: str) -> None:
    """Every lock and failure count of the account, from every address, is forgotten (a password
    reset, a second-factor login, or support staff)."""
    counters.bump(f"login:gen:{_email_key(email)}", timeout=None)


def token_guessing_blocked(*, ip: str | None) -> int:
    """Seconds until `ip` may present bearer tokens again (0: it may now)."""
    if not ip:
        return 0
    number, left = _window(settings.QM_TOKEN_GUESS_WINDOW.total_seconds())
    failures = counters.value(f"token:fail:{ip}:{number}")
    return left if failures >= settings.QM_TOKEN_GUESS_LIMIT else 0


def record_token_failure(*, ip: str | None) -> bool:
    """Count an unknown or revoked token from `ip`; True when this failure reached the limit."""
    if not ip:
        return False
    seconds = settings.QM_TOKEN_GUESS_WINDOW.total_seconds()
    number, _ = _window(seconds)
    return counters.bump(f"token:fail:{ip}:{number}", timeout=int(seconds) + 1) == settings.QM_TOKEN_GUESS_LIMIT
