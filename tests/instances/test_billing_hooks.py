"""Instances follow the user's plan: trial limits, live upgrades, refused downgrades, cancellation."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import api_token_create
from billing.models import Subscription
from billing.services import subscriptions_expire
from instances.models import Instance
from tests.db import committing_db

pytestmark = committing_db


def platform_file(runtime, instance_id: str) -> dict:
    return yaml.safe_load(runtime.read_file(instance_id, "platform.yaml"))


def memory_limit_mb(runtime, instance_id: str) -> int:
    """The limit the runtime enforces on the running engine."""
    return runtime.stats(instance_id).memory_limit_mb


@pytest.fixture
def trial_client(runtime, make_user):
    user = make_user()  # no subscription: the free trial
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user)[1]}")
    return user, client


def test_trial_runs_one_paper_instance(trial_client, runtime):
    user, client = trial_client
    body = client.post("/api/saas/instances/create", {"plan": "personal"}, format="json").json()
    assert body["status"] == "running"
    assert platform_file(runtime, body["instance_id"])["paper_only"] is True
    second = client.post("/api/saas/instances/create", {"plan": "personal"}, format="json")
    assert second.status_code == 403 and second.json()["error"]["code"] == "instance_limit_reached"


def test_trial_expiry_stops_the_instance(trial_client, runtime):
    user, client = trial_client
    instance_id = client.post("/api/saas/instances/create", {"plan": "personal"}, format="json").json()["instance_id"]
    user.date_joined = timezone.now() - timedelta(days=8)
    user.save()
    assert subscriptions_expire() == 1
    assert Instance.objects.get(instance_id=instance_id).status == "stopped"
    assert runtime.status(instance_id).state.value != "running"


def test_upgrade_raises_limits_of_running_instances(customer, customer_client, subscribe, runtime):
    subscribe(customer, "personal")
    instance_id = customer_client.post("/api/saas/instances/create", {"plan": "personal"}, format="json").json()[
        "instance_id"
    ]
    started = runtime.status(instance_id).started_at
    assert memory_limit_mb(runtime, instance_id) == 1024
    response = customer_client.post(
        "/api/billing/subscriptions/update-plan", {"new_plan": "professional"}, format="json"
    )
    assert response.status_code == 200 and response.json()["plan"] == "professional"
    assert Instance.objects.get(instance_id=instance_id).plan.code == "professional"
    assert memory_limit_mb(runtime, instance_id) == 2048
    assert platform_file(runtime, instance_id)["max_trading_pairs"] == 5
    # In place on every backend (swarm too: the running container's limits change; the task template
    # follows at the next start).
    assert runtime.status(instance_id).started_at == started
    assert runtime.status(instance_id).state.value == "running"


def test_downgrade_that_does_not_fit_is_refused_with_what_is_over(customer, customer_client, runtime):
    first = customer_client.post("/api/saas/instances/create", {"plan": "professional"}, format="json").json()
    second = customer_client.post("/api/saas/instances/create", {"plan": "professional"}, format="json").json()
    response = customer_client.post("/api/billing/subscriptions/update-plan", {"new_plan": "personal"}, format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "plan_does_not_fit"
    assert [p["instance_id"] for p in error["details"]["over"]] == [second["instance_id"]]
    assert customer.subscription.plan.code == "professional"
    assert Instance.objects.get(instance_id=first["instance_id"]).plan.code == "professional"


def test_cancel_immediately_stops_instances_and_keeps_data(customer, customer_client, runtime):
    instance_id = customer_client.post("/api/saas/instances/create", {"plan": "personal"}, format="json").json()[
        "instance_id"
    ]
    body = customer_client.post("/api/billing/subscriptions/cancel", {"immediately": True}, format="json").json()
    assert body["status"] == "canceled"
    instance = Instance.objects.get(instance_id=instance_id)
    assert instance.status == "stopped"
    assert runtime.status(instance_id).state.value == "exited"  # stopped, not removed: the data stays
    refused = customer_client.post(f"/api/saas/instances/{instance_id}/start")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "no_subscription"


def test_cancel_at_period_end_runs_until_then(customer, customer_client, runtime):
    instance_id = customer_client.post("/api/saas/instances/create", {"plan": "personal"}, format="json").json()[
        "instance_id"
    ]
    customer_client.post("/api/billing/subscriptions/cancel", {"immediately": False}, format="json")
    assert subscriptions_expire() == 0
    assert Instance.objects.get(instance_id=instance_id).status == "running"
    Subscription.objects.filter(user=customer).update(current_period_end=timezone.now() - timedelta(minutes=1))
    assert subscriptions_expire() == 1
    assert Instance.objects.get(instance_id=instance_id).status == "stopped"
