"""The Redis channel layer: a consumer that waits longer than one blocking pop for its next message
gets it (an idle wait ended in redis-py's read timeout, which closed live-log websockets)."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.layers import get_channel_layer
from django.conf import settings

pytestmark = pytest.mark.services


def test_every_blocking_pop_ends_before_the_read_timeout():
    if not settings.REDIS_URL:
        pytest.skip("the in-memory layer (no REDIS_URL) has no sockets")
    layer = get_channel_layer()
    timeout = layer.create_pool(0).connection_kwargs.get("socket_timeout")  # unset: redis-py's 5 s
    assert timeout is not None and timeout > layer.brpop_timeout + 1


def test_a_message_after_a_long_idle_wait_arrives():
    if not settings.REDIS_URL:
        pytest.skip("the in-memory layer (no REDIS_URL) has no sockets")

    async def scenario():
        layer = get_channel_layer()
        channel = await layer.new_channel()

        async def send_later():
            await asyncio.sleep(layer.brpop_timeout + 1)
            await layer.send(channel, {"type": "instance.status", "status": "running"})

        sender = asyncio.create_task(send_later())
        started = time.monotonic()
        message = await asyncio.wait_for(layer.receive(channel), timeout=3 * layer.brpop_timeout)
        await sender
        await layer.flush()
        return message, time.monotonic() - started

    message, waited = asyncio.run(scenario())
    assert message["status"] == "running" and waited > 5
