"""Console pages of instances: dashboard, create flow, detail, lifecycle actions (same services as the API)."""

from __future__ import annotations

import pytest

from instances.models import Instance
from tests.db import committing_db

pytestmark = committing_db


@pytest.fixture
def console(client, customer, runtime):
    client.force_login(customer)
    return client


def test_create_flow_choose_confirm_watch(console, customer):
    choose = console.get("/instances/new")
    assert b'name="plan" value="personal"' in choose.content and b'value="professional"' in choose.content
    assert b'value="enterprise"' not in choose.content  # above the user's plan
    confirm = console.get("/instances/new?plan=professional")
    assert b"Confirm and create" in confirm.content
    created = console.post("/instances/new", {"plan": "professional", "confirm": "1"})
    instance = Instance.objects.get(owner=customer)
    assert created.status_code == 302 and created["Location"] == f"/instances/{instance.instance_id}"
    assert instance.status == "running"
    detail = console.get(created["Location"])
    assert instance.instance_id.encode() in detail.content and b"Live logs" in detail.content
    dashboard = console.get("/")
    assert instance.instance_id.encode() in dashboard.content
    assert b"1 of 3 instances." in dashboard.content


def test_create_errors_are_shown(console):
    response = console.post("/instances/new", {"plan": "enterprise", "confirm": "1"}, follow=True)
    assert b"cannot create Enterprise instances" in response.content
    assert not Instance.objects.exists()


def test_actions_go_through_the_services(console, customer):
    console.post("/instances/new", {"plan": "personal", "confirm": "1"})
    instance = Instance.objects.get(owner=customer)
    stopped = console.post(f"/instances/{instance.instance_id}/stop", follow=True)
    assert b"Stop requested" in stopped.content
    instance.refresh_from_db()
    assert instance.status == "stopped"
    console.post(f"/instances/{instance.instance_id}/start")
    instance.refresh_from_db()
    assert instance.status == "running"
    deleted = console.post(f"/instances/{instance.instance_id}/delete")
    assert deleted["Location"] == "/"
    instance.refresh_from_db()
    assert instance.status == "deleted"
    assert console.get(f"/instances/{instance.instance_id}").status_code == 404


def test_other_users_instances_are_404(console, customer, make_user, client):
    console.post("/instances/new", {"plan": "personal", "confirm": "1"})
    instance = Instance.objects.get(owner=customer)
    client.force_login(make_user())
    assert client.get(f"/instances/{instance.instance_id}").status_code == 404
    assert client.post(f"/instances/{instance.instance_id}/stop").status_code == 404
    assert client.post(f"/instances/{instance.instance_id}/explode").status_code == 404
    instance.refresh_from_db()
    assert instance.status == "running"
