"""Entitlements kept between requests (billing/entitlements_cache.py) are never a plan the user no
longer has: a write is seen by the next request of every process, a rollback leaves nothing behind,
and rights that end by the clock end on time."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.services import api_token_create
from billing import entitlements_cache
from billing.models import Subscription
from billing.selectors import TRIAL_DAYS, entitlements_for, entitlements_memo, plan_get
from billing.services import subscription_grant_local
from quantmesh.cache import redis_client
from tests.db import committing_db
from tests.live_server import live_portal

pytestmark = committing_db


def _redis():
    return redis_client(settings.REDIS_URL)


@pytest.fixture(autouse=True)
def _empty_cache():
    entitlements_cache.forget_local()
    yield
    entitlements_cache.forget_local()


def _in_a_request(user):
    with entitlements_memo():
        return entitlements_for(user)


def test_a_second_request_reads_no_subscription(user, subscribe, django_assert_num_queries):
    subscribe(user, "professional")
    assert _in_a_request(user).plan.code == "professional"
    with django_assert_num_queries(0):
        assert _in_a_request(user).plan.code == "professional"


def test_a_write_in_this_process_is_seen_by_the_next_request(user, subscribe):
    subscribe(user, "professional")
    assert _in_a_request(user).plan.code == "professional"
    row = Subscription.objects.get(user=user)
    row.status = Subscription.Status.CANCELED
    row.save(update_fields=["status"])
    assert _in_a_request(user).plan is None


def test_a_rolled_back_grant_is_not_kept(user):
    assert _in_a_request(user).trial
    with pytest.raises(RuntimeError), transaction.atomic():
        subscription_grant_local(user=user, plan=plan_get(code="enterprise"))
        assert _in_a_request(user).plan.code == "enterprise"  # this transaction sees its own write
        raise RuntimeError("the request failed")
    assert _in_a_request(user).trial and _in_a_request(user).plan.code == "personal"


def test_a_trial_ends_on_time_although_nothing_was_written(user):
    user.date_joined = timezone.now() - timedelta(days=TRIAL_DAYS) + timedelta(seconds=1.5)
    user.save(update_fields=["date_joined"])
    assert _in_a_request(user).trial
    time.sleep(1.6)
    assert _in_a_request(user).plan is None


def test_a_redis_that_lost_its_keys_matches_no_entry(user, subscribe):
    """Redis keeps nothing on disk: after a restart every version is new, so a write whose version
    change was lost with it (standing in for it: SQL that bypasses the ORM) is read at once."""
    keys = [entitlements_cache.PLANS_KEY, f"qm:entitlements:user:{user.pk}"]
    subscribe(user, "professional")
    _redis().delete(*keys)  # the entry is read under versions created on demand, as after a restart
    assert _in_a_request(user).plan.code == "professional"
    _redis().delete(*keys)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE billing_subscription SET status = 'canceled' WHERE user_id = %s", [user.pk])
    assert _in_a_request(user).plan is None


def test_without_redis_every_request_reads_the_database(user, subscribe, settings, django_assert_num_queries):
    subscribe(user, "professional")
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    for _ in range(2):
        with django_assert_num_queries(1):
            assert _in_a_request(user).plan.code == "professional"


def _plan_seen(base: str, token: str) -> str | None:
    request = urllib.request.Request(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        return json.loads(response.read())["plan"]


def test_another_process_sees_a_change_on_its_next_request(user, subscribe):
    subscribe(user, "professional")
    token = api_token_create(user=user)[1]
    with live_portal() as (base, _):
        assert [_plan_seen(base, token) for _ in range(3)] == ["professional"] * 3
        assert _redis().get(f"qm:entitlements:user:{user.pk}")  # the portal keeps the user's entitlements
        subscribe(user, "personal")  # a downgrade, committed in this process
        assert _plan_seen(base, token) == "personal"
        row = Subscription.objects.get(user=user)
        row.status = Subscription.Status.CANCELED
        row.save(update_fields=["status"])
        assert _plan_seen(base, token) is None
        # A change to the plan catalogue reaches every user's entry.
        subscribe(user, "professional")
        assert _plan_seen(base, token) == "professional"
        plan = plan_get(code="professional")
        plan.is_active = False
        plan.save(update_fields=["is_active"])
        assert _plan_seen(base, token) == "professional"  # a retired plan still serves its subscribers
        plan.code = "professional-2026"
        plan.save(update_fields=["code"])
        assert _plan_seen(base, token) == "professional-2026"
