"""The events feeds: what happened to an instance (GET /api/saas/instances/:id/events) and to every
instance of the account (GET /api/saas/events), newest first, paginated, owner-only. The live
websocket pushes the same events (tests/cli/test_qm.py follows them through `qm instances logs -f`)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.services import api_token_create
from backups.models import Backup
from backups.services import backup_create
from instances.events import instance_event_record

from .conftest import running_rows


def _client(user) -> APIClient:
    _, raw = api_token_create(user=user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return api


@pytest.fixture
def owner(user, subscribe):
    subscribe(user, "professional")
    return user


def test_instance_feed_shows_lifecycle_crashes_and_who_did_it(owner, make_user, subscribe):
    instance = running_rows(owner, 1, prefix="e")[0]
    instance_event_record(instance=instance, kind="stop_requested", actor=owner, from_status="running")
    instance_event_record(instance=instance, kind="crashed", reason="exited with code 137 (out of memory)")
    instance_event_record(instance=instance, kind="plan_changed", plan="enterprise", previous_plan="professional")
    instance_event_record(instance=instance, kind="autoscaled", actor=make_user(is_staff=True), cpu_limit=3.0)
    response = _client(owner).get(f"/api/saas/instances/{instance.instance_id}/events")
    assert response.status_code == 200
    events = response.json()
    assert [e["kind"] for e in events] == ["autoscaled", "plan_changed", "crashed", "stop_requested"]
    assert [e["actor"] for e in events] == ["support", "platform", "platform", "owner"]
    crash = events[2]
    assert crash["detail"] == {"reason": "exited with code 137 (out of memory)"}
    assert set(crash) == {"id", "instance_id", "kind", "from_status", "to_status", "actor", "detail", "created_at"}
    assert crash["instance_id"] == instance.instance_id and crash["created_at"].endswith("Z")

    stranger = make_user()
    subscribe(stranger, "professional")
    assert _client(stranger).get(f"/api/saas/instances/{instance.instance_id}/events").status_code == 404
    assert _client(stranger).get("/api/saas/events").json() == []


def test_account_feed_spans_instances_and_keeps_deleted_ones(owner):
    first, second = running_rows(owner, 2, prefix="a")
    instance_event_record(instance=first, kind="created", actor=owner)
    instance_event_record(instance=second, kind="created", actor=owner)
    second.status = "deleted"
    second.save(update_fields=["status"])
    instance_event_record(instance=second, kind="deleted")
    api = _client(owner)
    events = api.get("/api/saas/events").json()
    assert [(e["instance_id"], e["kind"]) for e in events] == [
        (second.instance_id, "deleted"),
        (second.instance_id, "created"),
        (first.instance_id, "created"),
    ]
    page = api.get("/api/saas/events?limit=2")
    assert len(page.json()) == 2 and page["X-Next-Cursor"]
    rest = api.get(f"/api/saas/events?limit=2&cursor={page['X-Next-Cursor']}").json()
    assert [e["id"] for e in rest] == [events[2]["id"]]


def test_backups_are_in_the_feed_failed_ones_with_the_reason(owner, settings, tmp_path):
    settings.QM_RUNTIME_BACKEND = "process"
    settings.QM_PROCESS_ROOT = tmp_path  # no engine database there: the backup fails
    instance = running_rows(owner, 1, prefix="f")[0]
    backup = backup_create(instance=instance, kind=Backup.Kind.MANUAL)
    assert backup.status == Backup.Status.FAILED
    event = _client(owner).get(f"/api/saas/instances/{instance.instance_id}/events").json()[0]
    assert event["kind"] == "backup_failed"
    assert event["detail"]["backup"] == backup.backup_id and "no engine database" in event["detail"]["reason"]
