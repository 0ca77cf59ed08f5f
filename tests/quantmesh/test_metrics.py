"""The portal's Prometheus endpoints: its own metrics and service discovery of the engines."""

from __future__ import annotations

import pytest

from instances import tasks
from instances.models import Instance

pytestmark = pytest.mark.django_db
METRICS_TOKEN = "scrape-token"  # noqa: S105 (a test value)


@pytest.fixture
def scraper(client, settings):
    settings.QM_METRICS_TOKEN = METRICS_TOKEN
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {METRICS_TOKEN}"
    return client


def test_portal_metrics(scraper, user, subscribe):
    client = scraper
    subscribe(user, "enterprise")
    plan = user.subscription.plan
    Instance.objects.bulk_create(
        Instance(
            instance_id=f"qm-m{n:05d}-1700000000",
            slug=f"m{n:05d}",
            owner=user,
            plan=plan,
            status="stopped" if n == 0 else "running",
            image="x",
            proxy_secret_encrypted="x",
        )
        for n in range(3)
    )
    client.get("/healthz")
    before = client.get("/metrics").content.decode()
    assert 'quantmesh_instances{state="running"} 2.0' in before
    assert 'quantmesh_instances{state="stopped"} 1.0' in before
    tasks.reconcile.apply()
    text = client.get("/metrics").content.decode()
    assert 'quantmesh_instances{state="restarting"} 2.0' in text  # rows said running, no engine behind
    assert 'quantmesh_http_requests_total{method="GET",status="200"}' in text
    assert "quantmesh_http_request_duration_seconds_bucket" in text
    assert "quantmesh_reconcile_last_checked 3.0" in text
    assert "quantmesh_reconcile_last_crashed 2.0" in text
    assert "quantmesh_celery_queue_depth" in text
    assert 'quantmesh_provisioning_seconds{quantile="0.5"}' in text


def test_metrics_token(client, settings):
    assert client.get("/metrics").status_code == 404  # unset: nobody
    settings.QM_METRICS_TOKEN = METRICS_TOKEN
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").status_code == 200
    assert client.get("/internal/prometheus/targets").status_code == 404


def test_service_discovery_labels_each_instance(scraper, user, subscribe, settings):
    client = scraper
    settings.QM_METRICS_PORTAL_TARGET = "portal:8000"
    subscribe(user, "professional")
    Instance.objects.create(
        instance_id="qm-sd0001-1700000000",
        slug="sd0001",
        owner=user,
        plan=user.subscription.plan,
        status="running",
        image="x",
        proxy_secret_encrypted="x",
    )
    Instance.objects.create(
        instance_id="qm-sd0002-1700000000",
        slug="sd0002",
        owner=user,
        plan=user.subscription.plan,
        status="deleted",
        image="x",
        proxy_secret_encrypted="x",
    )
    targets = client.get("/internal/prometheus/targets").json()
    assert targets == [
        {
            "targets": ["portal:8000"],
            "labels": {
                "__metrics_path__": "/internal/engine-metrics/qm-sd0001-1700000000",
                "instance": "qm-sd0001-1700000000",
                "owner": str(user.pk),  # a stable id, not personal data
            },
        }
    ]
