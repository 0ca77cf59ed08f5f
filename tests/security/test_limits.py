"""Limits a single customer cannot push past: deeply nested JSON, API request rates, open log streams."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from rest_framework.test import APIClient
from websockets.exceptions import ConnectionClosed

from accounts.services import api_token_create
from tests.db import committing_db
from tests.instances.test_logstream import api, ws_url

from ..live_server import live_portal


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [33, 5000, 100000])
def test_deeply_nested_json_is_a_400_not_a_500(api_client, depth):
    body = '{"plan": ' + "[" * depth + "]" * depth + "}"
    response = api_client.post("/api/saas/instances/create", body, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "malformed_request" and "nested too deeply" in error["message"]


@pytest.mark.django_db
def test_api_requests_are_limited_per_user(api_client, user, make_user, settings):
    settings.QM_API_USER_RATE = "5/minute"
    statuses = [api_client.get("/api/auth/me").status_code for _ in range(5)]
    assert statuses == [200] * 5
    limited = api_client.get("/api/saas/instances")
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert int(limited["Retry-After"]) > 0

    def client_of(someone) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=someone)[1]}")
        return client

    assert client_of(user).get("/api/auth/me").status_code == 429  # another token of the same user
    assert client_of(make_user()).get("/api/auth/me").status_code == 200  # another user has their own


@committing_db
@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_one_user_cannot_open_more_log_streams_than_the_cap(runtime, customer):
    _, token = api_token_create(user=customer)
    with live_portal(QM_LOGSTREAMS_PER_USER="3", QM_WS_HEARTBEAT_SECONDS="1") as (base, _):
        instance_id = api(base, token, "POST", "/api/saas/instances/create", {"plan": "personal"})["instance_id"]
        url = ws_url(base, instance_id, "?lines=10000")
        headers = {"Authorization": f"Bearer {token}"}

        async def first_message(ws) -> dict | int:
            try:
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=20))
                    if message["type"] == "status":
                        return message
            except ConnectionClosed as closed:
                return closed.rcvd.code

        async def scenario():
            held = [await websockets.connect(url, additional_headers=headers) for _ in range(3)]
            for ws in held:
                assert (await first_message(ws))["kind"] == "connected"
            async with websockets.connect(url, additional_headers=headers) as extra:
                assert await first_message(extra) == 4429  # the fourth stream of one user
            await held.pop().close()
            await asyncio.sleep(0.3)
            async with websockets.connect(url, additional_headers=headers) as again:
                assert (await first_message(again))["kind"] == "connected"  # a freed slot is usable
            for ws in held:
                await ws.close()

        asyncio.run(scenario())
