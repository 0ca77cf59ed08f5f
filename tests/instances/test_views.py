"""Console pages of instances: dashboard, create flow, detail, lifecycle actions (same services as the API)."""

from __future__ import annotations

import time

import pytest

from instances.models import Instance
from tests.db import committing_db
from tests.i18n_check import readable_text

pytestmark = committing_db


@pytest.fixture
def console(client, customer, runtime):
    client.force_login(customer)
    return client


def test_create_flow_choose_confirm_watch(console, customer):
    choose = console.get("/instances/new")
    assert b'name="plan" value="personal"' in choose.content and b'value="professional"' in choose.content
    assert b'value="enterprise"' not in choose.content  # above the user's plan
    # The customer's own plan is chosen for them, and named in words (the bug: Personal pre-selected,
    # and the raw code "professional" shown).
    assert b'value="professional" required checked' in choose.content
    assert b'value="personal" required checked' not in choose.content
    assert "professional" not in readable_text(choose.content.decode())
    assert "<strong>Professional</strong>" in choose.content.decode()
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
    running_page = console.get(f"/instances/{instance.instance_id}").content.decode()
    # Action buttons follow the state: Start is disabled on a running instance, Stop is not.
    assert 'data-action="start" disabled' in running_page and 'data-action="stop">' in running_page
    again = console.post(f"/instances/{instance.instance_id}/start", follow=True)
    assert b"is already running" in again.content and b"Start requested" not in again.content
    stopped = console.post(f"/instances/{instance.instance_id}/stop", follow=True)
    assert f"Stopping {instance.instance_id}.".encode() in stopped.content
    instance.refresh_from_db()
    assert instance.status == "stopped"
    stopped_page = console.get(f"/instances/{instance.instance_id}").content.decode()
    assert 'data-action="start">' in stopped_page and 'data-action="stop" disabled' in stopped_page
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


def test_engine_error_is_the_state_everyone_sees(console, customer, customer_client):
    """Wrong settings: the container runs but the engine does not trade. The API, the dashboard and
    the instance page say so, with the engine's cause and reason (they said "running", no reason)."""
    from instances.runtime import get_backend
    from instances.services import instance_restart
    from instances.trading import engines_sample

    console.post("/instances/new", {"plan": "personal", "confirm": "1"})
    instance = Instance.objects.get(owner=customer)
    assert engines_sample() == 1
    instance.refresh_from_db()
    assert instance.trading_state in {"trading", "starting"}
    get_backend().write_files(instance.instance_id, {"config.yaml": b"grid: {max_layers: 0}\n"})
    instance_restart(instance=instance)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        engines_sample()
        instance.refresh_from_db()
        if instance.trading_state == "error":
            break
        time.sleep(0.3)
    body = customer_client.get(f"/api/saas/instances/{instance.instance_id}").json()
    assert body["status"] == "running"  # the manual's field stays
    assert (body["trading_state"], body["trading_cause"]) == ("error", "config_error")
    assert body["trading_reason"].startswith("invalid config: grid.max_layers")
    page = console.get(f"/instances/{instance.instance_id}").content.decode()
    assert "Not trading: configuration error" in page and "invalid config: grid.max_layers" in page
    assert "tone-bad" in page and "?to=config" in page  # coloured, in words, with the way to fix it
    dashboard = console.get("/").content.decode()
    assert "Not trading: configuration error" in dashboard
    trading = customer_client.get(f"/api/saas/instances/{instance.instance_id}/trading?days=7").json()
    assert trading["trading_state"] == "error" and trading["history"]["time"]
    assert customer_client.get(f"/api/saas/instances/{instance.instance_id}/trading?days=30").status_code == 400


def test_trading_picture_and_history_survive_a_reload(console, customer, customer_client):
    from instances.trading import engines_sample

    console.post("/instances/new", {"plan": "personal", "confirm": "1"})
    instance = Instance.objects.get(owner=customer)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = customer_client.get(f"/api/saas/instances/{instance.instance_id}/trading").json()
        if body["symbols"] and body["symbols"][0]["orders"]:
            break
        time.sleep(0.3)
    symbol = body["symbols"][0]
    assert body["trading_state"] == "trading" and symbol["symbol"] == "BTC/USDT"
    assert {"price", "position", "realized_pnl", "unrealized_pnl", "fees", "orders", "fills"} <= set(symbol)
    engines_sample()
    again = customer_client.get(f"/api/saas/instances/{instance.instance_id}/trading").json()["history"]
    assert len(again["time"]) >= 1 and "BTC/USDT" in again["price"] and again["cpu_usage"][0] is not None
    page = console.get(f"/instances/{instance.instance_id}").content.decode()
    for part in ("pnl-chart", "price-chart", "resources-chart", "uPlot.iife.min.js", 'id="orders"', 'id="fills"'):
        assert part in page
    # Status and actions first, then trading, logs and resources; domains and autoscaling on their tabs.
    order = [page.index(marker) for marker in ('id="actions"', 'id="trading"', 'id="logs"', 'id="resources-chart"')]
    assert order == sorted(order) and 'id="new-domain"' not in page and "scaling-title" not in page
    assert 'id="new-domain"' in console.get(f"/instances/{instance.instance_id}?tab=domains").content.decode()
    assert "scaling-title" in console.get(f"/instances/{instance.instance_id}?tab=autoscaling").content.decode()
    assert console.get(f"/instances/{instance.instance_id}?tab=nope").status_code == 404
