"""Redis dies and comes back, empty, while viewers watch an instance's live log: the viewers
resume by themselves and get every line, each once, numbered on from where they were."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from accounts.services import api_token_create
from tests.conftest import require_service
from tests.db import committing_db
from tests.instances.test_logstream import api, ws_url
from tests.live_server import live_portal

from .services import PrivateRedis

pytestmark = [committing_db, pytest.mark.parametrize("runtime", ["process"], indirect=True)]


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    require_service(bool(server.binary), "redis-server is not installed")
    server.start()
    yield server
    server.stop()


class Viewer:
    """A client as the console's is: on a closed socket it reconnects with ?since=<last seq>."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token
        self.lines: list[tuple[int, str]] = []
        self.gaps: list[dict] = []
        self.reconnects = 0

    async def run(self, until: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.saw(until):
            query = f"?since={self.lines[-1][0]}" if self.lines else "?lines=1"
            try:
                async with websockets.connect(
                    self.url + query, additional_headers={"Authorization": f"Bearer {self.token}"}, open_timeout=5
                ) as ws:
                    while not self.saw(until):
                        raw = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.monotonic()))
                        self.take(json.loads(raw))
            except (ConnectionClosed, InvalidStatus, OSError, TimeoutError):
                self.reconnects += 1
                await asyncio.sleep(0.5)

    def take(self, message: dict) -> None:
        if message["type"] == "logs":
            self.lines += [(message["seq"] + i, text) for i, text in enumerate(message["lines"])]
        elif message["type"] == "gap":
            self.gaps.append(message)

    def saw(self, marker: str) -> bool:
        return any(marker in text for _, text in self.lines)


def test_viewers_resume_after_redis_restarts_empty(runtime, customer, private_redis):
    _, token = api_token_create(user=customer)
    with live_portal(REDIS_URL=private_redis.url, CELERY_TASK_ALWAYS_EAGER="1", QM_WS_HEARTBEAT_SECONDS="1") as (
        base,
        _,
    ):
        instance_id = api(base, token, "POST", "/api/saas/instances/create", {"plan": "personal"})["instance_id"]
        log = runtime.root / instance_id / "engine.log"

        def write(label: str, count: int) -> None:
            with open(log, "a") as handle:
                for n in range(count):
                    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.999Z", time.gmtime())
                    handle.write(f"{stamp} INFO marker {label}-{n}\n")

        async def scenario():
            viewers = [Viewer(ws_url(base, instance_id), token) for _ in range(3)]
            watching = [asyncio.create_task(v.run(until="after-9", seconds=60)) for v in viewers]
            await asyncio.sleep(1.5)
            write("before", 10)
            await asyncio.sleep(1.5)
            private_redis.stop()
            write("during", 10)  # written while Redis is down
            await asyncio.sleep(3)
            private_redis.start()  # back, with nothing in it
            await asyncio.sleep(1)
            write("after", 10)
            await asyncio.gather(*watching)
            return viewers

        viewers = asyncio.run(scenario())

    expected = [f"{label}-{n}" for label in ("before", "during", "after") for n in range(10)]
    for viewer in viewers:
        markers = [text.rsplit(" ", 1)[1] for _, text in viewer.lines if " marker " in text]
        assert markers == expected  # every line, once, in order
        numbers = [seq for seq, _ in viewer.lines]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # numbering went on
        assert viewer.gaps == []
