"""Live logs in `make run`'s embedded default (no Redis: in-memory hub and fan-out), on a real daphne."""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets

from accounts.services import api_token_create
from tests.db import committing_db

from ..live_server import live_portal
from .test_logstream import api, collect, numbered, ws_url

pytestmark = committing_db
LINES = 300


@pytest.mark.parametrize("runtime", ["process"], indirect=True)  # lines are written straight to its log file
def test_every_viewer_gets_every_line_in_order_without_redis(runtime, customer):
    _, token = api_token_create(user=customer)
    with live_portal(REDIS_URL="", CELERY_TASK_ALWAYS_EAGER="1") as (base, _):
        instance_id = api(base, token, "POST", "/api/saas/instances/create", {"plan": "personal"})["instance_id"]
        headers = {"Authorization": f"Bearer {token}"}

        async def scenario():
            url = ws_url(base, instance_id)
            sockets = [await websockets.connect(url, additional_headers=headers) for _ in range(3)]
            try:
                for ws in sockets:
                    await collect(ws, lambda m: any(x["type"] == "status" for x in m))
                with open(runtime.root / instance_id / "engine.log", "a") as handle:
                    for n in range(LINES):
                        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.999Z", time.gmtime())
                        handle.write(f"{stamp} INFO marker n={n}\n")
                        if n % 50 == 0:
                            handle.flush()
                            await asyncio.sleep(0.03)  # several batches
                return [
                    numbered(await collect(ws, lambda m: sum(" marker " in t for _, t in numbered(m)) >= LINES))
                    for ws in sockets
                ]
            finally:
                for ws in sockets:
                    await ws.close()

        for lines in asyncio.run(scenario()):
            markers = [text.rsplit("n=", 1)[1] for _, text in lines if " marker " in text]
            assert markers == [str(n) for n in range(LINES)]
            assert [seq for seq, _ in lines] == list(range(lines[0][0], lines[0][0] + len(lines)))
