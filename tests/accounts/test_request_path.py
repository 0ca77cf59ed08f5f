"""The cheap request path: a bearer-token API read costs a fixed, small number of queries and no write."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from unittest import mock

import pytest
from django.conf import settings
from django.utils import timezone

from accounts.models import ApiToken
from billing.models import Subscription
from billing.selectors import entitlements_for, entitlements_memo, plan_get
from billing.services import subscription_grant_local
from instances.models import Instance

pytestmark = pytest.mark.django_db


def _instances(owner, count: int) -> None:
    Instance.objects.bulk_create(
        [
            Instance(
                instance_id=f"qm-p{n:05d}-1700000000",
                slug=f"p{n:05d}",
                owner=owner,
                plan=plan_get(code="personal"),
                status=Instance.Status.RUNNING,
                image=settings.QM_ENGINE_IMAGE,
                proxy_secret_encrypted="x",
            )
            for n in range(count)
        ]
    )


def test_me_costs_three_queries(api_client, user, subscribe, django_assert_num_queries):
    subscribe(user, "professional")
    api_client.get("/api/auth/me")  # last_used_at is written once, on first use
    # The token with its user (one indexed query), the subscription with its plan, the second factor.
    with django_assert_num_queries(3):
        answer = api_client.get("/api/auth/me")
    assert answer.status_code == 200 and answer.json()["plan"] == "professional"


def test_the_instance_list_costs_two_queries_whatever_its_length(
    api_client, user, subscribe, django_assert_num_queries
):
    subscribe(user, "enterprise")
    _instances(user, 50)
    api_client.get("/api/saas/instances")
    # The token with its user, one page of instances with their plans.
    with django_assert_num_queries(2):
        answer = api_client.get("/api/saas/instances")
    assert answer.status_code == 200 and len(answer.json()) == 50
    assert {row["plan"] for row in answer.json()} == {"personal"}  # each instance's plan, not the owner's


def test_last_used_is_written_at_most_once_a_minute(api_client, user, django_assert_num_queries):
    api_client.get("/api/auth/me")
    token = ApiToken.objects.get(user=user)
    first = token.last_used_at
    assert first is not None
    with django_assert_num_queries(4):  # token, subscription, the trial plan, second factor: no UPDATE
        api_client.get("/api/auth/me")
    token.refresh_from_db()
    assert token.last_used_at == first

    two_minutes_later = timezone.now() + timedelta(minutes=2)
    with mock.patch("accounts.authentication.timezone.now", return_value=two_minutes_later):
        api_client.get("/api/auth/me")
    token.refresh_from_db()
    assert token.last_used_at == two_minutes_later


def test_entitlements_are_read_once_a_request(user, django_assert_num_queries):
    subscription_grant_local(user=user, plan=plan_get(code="professional"))
    with entitlements_memo(), django_assert_num_queries(1):
        assert entitlements_for(user).plan.code == "professional"
        assert entitlements_for(user) is entitlements_for(user)


@pytest.mark.parametrize("in_request", [True, False])
def test_an_entitlement_change_is_seen_at_once(user, in_request):
    with entitlements_memo() if in_request else contextlib.nullcontext():
        _change_and_look(user)


def _change_and_look(user):
    assert entitlements_for(user).trial
    subscription_grant_local(user=user, plan=plan_get(code="professional"))
    assert entitlements_for(user).plan.code == "professional"

    # Written through another object (a webhook, an admin): the memo on `user` is stale all the same.
    row = Subscription.objects.get(user=user)
    row.status = Subscription.Status.CANCELED
    row.save(update_fields=["status"])
    assert entitlements_for(user).plan is None


def test_an_entitlement_change_is_seen_by_the_next_request(api_client, user, subscribe):
    assert api_client.get("/api/auth/me").json()["plan"] == "personal"  # the trial
    subscribe(user, "professional")
    assert api_client.get("/api/auth/me").json()["plan"] == "professional"
