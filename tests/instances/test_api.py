"""The instance endpoints of the manual, end to end on a real runtime backend."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import api_token_create
from instances.models import Instance, InstanceEvent
from tests.db import committing_db

from .conftest import running_rows

# serialized_rollback keeps the plan catalogue that the migrations loaded.
pytestmark = committing_db
ID = re.compile(r"^qm-([a-z0-9]{6})-(\d{10})$")


def test_create_answers_like_the_manual(create_instance, settings):
    before = int(time.time())
    body = create_instance("professional")
    assert body["status"] == "running"
    assert body["plan"] == "professional"
    match = ID.match(body["instance_id"])
    assert match and before <= int(match.group(2)) <= int(time.time())
    assert body["url"] == settings.QM_INSTANCE_URL_TEMPLATE.format(slug=match.group(1), domain=settings.QM_BASE_DOMAIN)
    assert body["port"] == 8080
    assert body["created_at"].endswith("Z")
    datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    assert body["healthy"] is True
    kinds = list(InstanceEvent.objects.filter(instance__instance_id=body["instance_id"]).values_list("kind", flat=True))
    assert "created" in kinds and "running" in kinds


def test_lifecycle_stop_start_restart_delete(create_instance, customer_client, runtime):
    instance_id = create_instance()["instance_id"]
    base = f"/api/saas/instances/{instance_id}"

    listed = customer_client.get("/api/saas/instances").json()
    assert [i["instance_id"] for i in listed] == [instance_id]
    assert customer_client.get(base).json()["status"] == "running"

    stopped = customer_client.post(f"{base}/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    assert runtime.status(instance_id).state.value != "running"
    again = customer_client.post(f"{base}/stop")  # a no-op that answers the state
    assert again.status_code == 200 and again.json()["status"] == "stopped"

    started = customer_client.post(f"{base}/start").json()
    assert started["status"] == "running"
    first_start = started["started_at"]

    restarted = customer_client.post(f"{base}/restart").json()
    assert restarted["status"] == "running"
    assert restarted["started_at"] > first_start

    deleted = customer_client.delete(base)
    assert deleted.status_code == 200 and deleted.json()["status"] == "deleted"
    assert customer_client.get(base).status_code == 404
    assert customer_client.get("/api/saas/instances").json() == []
    assert runtime.status(instance_id).state.value == "missing"
    instance = Instance.objects.get(instance_id=instance_id)
    assert instance.data_retained_until is not None  # data kept for the retention period
    kinds = list(
        InstanceEvent.objects.filter(instance=instance).order_by("created_at", "id").values_list("kind", flat=True)
    )
    for expected in [
        "created",
        "running",
        "stop_requested",
        "stopped",
        "start_requested",
        "restart_requested",
        "delete_requested",
        "deleted",
    ]:
        assert expected in kinds


def test_wait_zero_answers_provisioning_at_once(customer_client, runtime, settings):
    from quantmesh.celery import app

    app.conf.task_always_eager = False  # nobody consumes the queue: the answer must not wait
    try:
        response = customer_client.post("/api/saas/instances/create?wait=0", {"plan": "personal"}, format="json")
    finally:
        app.conf.task_always_eager = True
    assert response.status_code == 201
    assert response.json()["status"] == "provisioning"


def test_idempotency_key_makes_retries_safe(customer_client, runtime):
    headers = {"HTTP_IDEMPOTENCY_KEY": "create-1"}
    first = customer_client.post("/api/saas/instances/create", {"plan": "personal"}, format="json", **headers)
    second = customer_client.post("/api/saas/instances/create", {"plan": "personal"}, format="json", **headers)
    assert first.json()["instance_id"] == second.json()["instance_id"]
    assert Instance.objects.count() == 1
    assert len(runtime.list_all()) == 1


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"plan": "gold"}, 400, "unknown_plan"),
        ({}, 400, "invalid_request"),
        ({"plan": "personal", "size": 3}, 400, "invalid_request"),
        ({"plan": "enterprise"}, 403, "plan_not_allowed"),
    ],
)
def test_create_rejects_bad_requests(customer_client, body, status, code):
    response = customer_client.post("/api/saas/instances/create", body, format="json")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert Instance.objects.count() == 0


def test_no_subscription_cannot_create(api_client, user):
    user.date_joined = timezone.now() - timedelta(days=8)  # past the free trial
    user.save()
    response = api_client.post("/api/saas/instances/create", {"plan": "personal"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "no_subscription"


def test_instance_limit_per_plan(customer_client, user, subscribe, runtime, settings):
    subscribe(user, "personal")
    url = "/api/saas/instances/create?wait=0"
    assert customer_client.post(url, {"plan": "personal"}, format="json").status_code == 201
    refused = customer_client.post(url, {"plan": "personal"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "instance_limit_reached"
    assert refused.json()["error"]["details"] == {"limit": 1, "current": 1}


def test_another_tenants_instance_is_404_everywhere(create_instance, other_user, subscribe):
    instance_id = create_instance("personal")["instance_id"]
    subscribe(other_user, "enterprise")
    _, raw = api_token_create(user=other_user)
    intruder = APIClient()
    intruder.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    base = f"/api/saas/instances/{instance_id}"
    calls = [
        ("get", base),
        ("delete", base),
        ("post", f"{base}/stop"),
        ("post", f"{base}/start"),
        ("post", f"{base}/restart"),
        ("get", f"{base}/logs"),
        ("get", f"{base}/metrics"),
        ("get", f"{base}/export/trades"),
        ("get", f"{base}/export/config"),
    ]
    for method, url in calls:
        response = getattr(intruder, method)(url)
        assert response.status_code == 404, (method, url)
        assert instance_id in response.json()["error"]["message"] or response.json()["error"]["code"] == "not_found"
    assert intruder.get("/api/saas/instances").json() == []
    assert Instance.objects.get(instance_id=instance_id).status == "running"


def test_logs(create_instance, customer_client):
    instance_id = create_instance()["instance_id"]
    deadline = time.monotonic() + 10
    lines = []
    while time.monotonic() < deadline and len(lines) < 3:
        lines = customer_client.get(f"/api/saas/instances/{instance_id}/logs?lines=3").json()["lines"]
        time.sleep(0.2)
    assert 1 <= len(lines) <= 3
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (DEBUG|INFO|WARNING|ERROR) ", lines[-1])
    default = customer_client.get(f"/api/saas/instances/{instance_id}/logs").json()["lines"]
    assert len(default) >= len(lines)


@pytest.mark.parametrize("lines", ["0", "10001", "abc", "-5"])
def test_logs_lines_out_of_range_is_400(create_instance, customer_client, lines):
    instance_id = create_instance()["instance_id"]
    response = customer_client.get(f"/api/saas/instances/{instance_id}/logs?lines={lines}")
    assert response.status_code == 400
    assert "lines" in response.json()["error"]["details"]


def test_metrics(create_instance, customer_client):
    instance_id = create_instance("professional")["instance_id"]
    time.sleep(1.2)
    metrics = customer_client.get(f"/api/saas/instances/{instance_id}/metrics").json()
    assert set(metrics) == {
        "instance_id",
        "cpu_usage",
        "memory_usage",
        "cpu_limit",
        "memory_limit",
        "uptime",
        "last_active",
    }
    assert metrics["instance_id"] == instance_id
    assert metrics["cpu_limit"] == 2.0 and metrics["memory_limit"] == 2048
    assert 0 <= metrics["cpu_usage"] <= 1
    assert 0 < metrics["memory_usage"] < 0.2  # an idle engine uses a few tens of MB of 2 GiB
    assert 1 <= metrics["uptime"] < 60
    last_active = datetime.fromisoformat(metrics["last_active"].replace("Z", "+00:00"))
    assert (datetime.now(UTC) - last_active).total_seconds() < 10


def test_metrics_of_a_stopped_instance_is_409(create_instance, customer_client):
    instance_id = create_instance()["instance_id"]
    customer_client.post(f"/api/saas/instances/{instance_id}/stop")
    response = customer_client.get(f"/api/saas/instances/{instance_id}/metrics")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "instance_not_running"


@pytest.mark.parametrize("count", [2, 40])
def test_list_query_count_does_not_grow(customer, customer_client, count, django_assert_max_num_queries):
    running_rows(customer, count, prefix="l")
    with django_assert_max_num_queries(4):  # token, its last-used stamp, the list with its plans
        body = customer_client.get("/api/saas/instances").json()
    assert len(body) == count


def test_output_keys_match_the_documented_schema(create_instance):
    from instances.api.serializers import InstanceOutputSerializer

    body = create_instance()
    assert set(body) == set(InstanceOutputSerializer().fields)


def test_exports_through_the_portal(create_instance, customer_client):
    instance_id = create_instance()["instance_id"]
    base = f"/api/saas/instances/{instance_id}/export"
    trades = customer_client.get(f"{base}/trades")
    assert trades.status_code == 200 and trades["Content-Type"].startswith("text/csv")
    assert trades.content.decode().splitlines()[0].startswith("time,symbol,side,price,amount")
    assert f'filename="{instance_id}-trades.csv"' in trades["Content-Disposition"]
    config = customer_client.get(f"{base}/config")
    assert config.status_code == 200 and b"exchange" in config.content
    bad = customer_client.get(f"{base}/trades?since=last-week")
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("since:")
    assert customer_client.get(f"{base}/passwords").status_code == 404
    customer_client.post(f"/api/saas/instances/{instance_id}/stop")
    stopped = customer_client.get(f"{base}/trades")
    assert stopped.status_code == 409 and stopped.json()["error"]["code"] == "instance_not_running"


def test_engine_metrics_through_the_portal_for_prometheus(create_instance, client, settings):
    instance_id = create_instance()["instance_id"]
    assert client.get(f"/internal/engine-metrics/{instance_id}").status_code == 404  # no token set: nobody
    settings.QM_METRICS_TOKEN = "scrape-token"  # noqa: S105 (a test value)
    client.defaults["HTTP_AUTHORIZATION"] = "Bearer scrape-token"
    text = client.get(f"/internal/engine-metrics/{instance_id}").content.decode()
    assert 'quantmesh_engine_price{symbol="BTC/USDT"}' in text
    assert client.get("/internal/engine-metrics/qm-nobody-1700000000").status_code == 404
