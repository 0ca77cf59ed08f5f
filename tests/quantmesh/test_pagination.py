"""Cursor pagination: the first page is the list as before (a JSON array, newest first); the next
page is named in `Link` and `X-Next-Cursor`; following them visits every item once."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.services import api_token_create
from alerts.models import Alert
from backups.models import Backup
from tests.instances.conftest import running_rows


@pytest.fixture
def client(user, subscribe) -> APIClient:
    subscribe(user, "enterprise")
    _, raw = api_token_create(user=user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return api


def _walk(client, path: str, limit: int) -> tuple[list, int]:
    items, pages, url = [], 0, f"{path}?limit={limit}"
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        page = response.json()
        assert isinstance(page, list) and len(page) <= limit
        items.extend(page)
        pages += 1
        cursor = response.headers.get("X-Next-Cursor")
        if cursor:
            assert response["Link"] == f'<http://testserver{path}?cursor={cursor}&limit={limit}>; rel="next"'
        url = f"{path}?limit={limit}&cursor={cursor}" if cursor else None
    return items, pages


def test_instances_page_by_cursor_and_the_first_page_keeps_its_shape(client, user):
    running_rows(user, 7, prefix="p")
    whole = client.get("/api/saas/instances")
    assert "Link" not in whole and len(whole.json()) == 7  # the manual's list, unchanged
    items, pages = _walk(client, "/api/saas/instances", 3)
    assert pages == 3 and items == whole.json()


def test_alerts_are_no_longer_cut_at_fifty(client, user):
    Alert.objects.bulk_create(Alert(user=user, kind="payment_failed", subject=f"a{n}", message="m") for n in range(60))
    assert len(client.get("/api/saas/alerts").json()) == 60
    items, pages = _walk(client, "/api/saas/alerts", 25)
    assert pages == 3 and len({a["subject"] for a in items}) == 60


def test_backups_page_by_cursor(client, user):
    instance = running_rows(user, 1, prefix="b")[0]
    Backup.objects.bulk_create(
        Backup(instance=instance, owner=user, kind="daily", status="ok", backup_id=f"bk_{n:04d}") for n in range(5)
    )
    items, pages = _walk(client, f"/api/saas/instances/{instance.instance_id}/backups", 2)
    assert pages == 3 and sorted(b["backup_id"] for b in items) == [f"bk_{n:04d}" for n in range(5)]


@pytest.mark.parametrize("query", ["cursor=nonsense", "limit=0", "limit=501", "limit=x"])
def test_bad_cursor_or_limit_is_a_clear_400(client, query):
    response = client.get(f"/api/saas/instances?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["message"].split(":")[0] in ("cursor", "limit")
