"""API rate limits per user (anonymous callers per address), from settings read at call time.

The address is the one the rest of the portal trusts (accounts.requests.client_ip): DRF's own
would take any X-Forwarded-For a client sends. Requests are counted atomically (quantmesh/counters.py):
DRF's own keeps a list of timestamps that concurrent requests read and write back, so they all
passed, and the list (up to the whole rate) travels to Redis and back on every request. A bearer
token's request is counted in the round trip that checks the token is still current
(accounts/auth_cache.py): the throttle then uses those figures and makes no round trip of its own."""

from __future__ import annotations

import time

from django.conf import settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from accounts.requests import client_ip
from quantmesh import counters


class TrustedAddressMixin:
    def get_ident(self, request):
        return client_ip(request) or "-"


class CountedRateMixin:
    """At most `num_requests` per `duration` over a sliding window: this fixed window's count plus the
    previous one's, weighted by the share of it the sliding window still covers. A refused request
    is not counted, so a client that waits as told gets through."""

    def allow_request(self, request, view):
        key = self.get_cache_key(request, view)
        if self.rate is None or key is None:
            return True
        period = self.duration
        now = time.time()
        elapsed = now % period
        window = self._window_count(key, now)
        counted = getattr(request.auth, "request_counted", None)
        if counted is not None and counted[0] == window.key:
            count, previous = counted[1]
        else:  # not counted yet (or in the window before: a request at its edge counts in both)
            count, previous = counters.bump_reading(window.key, window.other, timeout=window.timeout)
        if previous * (1 - elapsed / period) + count <= self.num_requests:
            return True
        counters.bump(window.key, timeout=window.timeout, by=-1)
        if count > self.num_requests:  # this window alone is full
            self._wait = period - elapsed
        else:  # until the previous window's weight has fallen far enough
            self._wait = period * (1 - (self.num_requests - count) / previous) - elapsed
        return False

    def wait(self):
        return max(self._wait, 0.001)

    def _window_count(self, key: str, now: float) -> counters.Count:
        number = int(now // self.duration)
        return counters.Count(f"{key}:{number}", f"{key}:{number - 1}", timeout=2 * self.duration + 1)


class PerUserRateThrottle(TrustedAddressMixin, CountedRateMixin, UserRateThrottle):
    """QM_API_USER_RATE requests per user, whichever token or session they come with."""

    def get_rate(self):
        return settings.QM_API_USER_RATE

    @classmethod
    def authentication_count(cls, user_id: int) -> counters.Count | None:
        """The count allow_request() would make for `user_id` now, for bearer authentication to make
        in its own round trip (accounts.authentication)."""
        throttle = cls()
        if throttle.rate is None:
            return None
        return throttle._window_count(throttle.cache_format % {"scope": throttle.scope, "ident": user_id}, time.time())


class PerAddressAnonRateThrottle(TrustedAddressMixin, CountedRateMixin, AnonRateThrottle):
    def get_rate(self):
        return settings.QM_API_ANON_RATE
