"""`wait=1` on a create or lifecycle call, without holding a database connection or a thread.

The call answers once the runtime has caught up with the change (`Instance.settled`) or after
QM_CREATE_WAIT_SECONDS, with the instance as it then is. The request's thread only makes the
change; under ASGI the answer is a streaming response whose body is made on the event loop:
it joins the instance's channel-layer group (the status changes `events` publishes on commit,
from whichever process made them: a Celery worker, another portal process), gives its database
connection back while it waits and reads the instance again once a change says it has settled.
Status code and headers do not depend on the wait (daphne sends them with the body).

Outside ASGI (Django's test client) the same wait runs in the request's thread.
"""

from __future__ import annotations

import asyncio
import contextlib

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.http import StreamingHttpResponse
from rest_framework.response import Response

from instances.events import instance_group
from instances.models import Instance
from quantmesh.outages import OUTAGE_ERRORS

from .serializers import InstanceOutputSerializer


class SettlingResponse(Response):
    """The instance's answer once it has settled (bounded), rendered as a streaming body under ASGI."""

    def __init__(self, instance: Instance, *, status: int):
        super().__init__(InstanceOutputSerializer(instance).data, status=status)
        self.instance = instance

    def render(self):
        request = self.renderer_context["request"]._request
        if not isinstance(request, ASGIRequest):
            self.data = async_to_sync(settled_view)(self.instance, seconds=settings.QM_CREATE_WAIT_SECONDS)
            return super().render()
        super().render()  # the headers DRF's renderer sets (Content-Type), from the state before the wait
        streaming = StreamingHttpResponse(self._settled_body(), status=self.status_code)
        for header, value in self.items():
            streaming[header] = value
        streaming.cookies = self.cookies
        return streaming

    async def _settled_body(self):
        self.data = await settled_view(self.instance, seconds=settings.QM_CREATE_WAIT_SECONDS)
        yield self.rendered_content


async def settled_view(instance: Instance, *, seconds: float) -> dict:
    """The instance's API view once it has settled, or once `seconds` have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    await sync_to_async(_release_connection)()
    async with _StatusChanges(instance.instance_id) as changes:
        while True:  # subscribed first, then read: a change made in between is not missed
            view, settled = await sync_to_async(_read)(instance)
            remaining = deadline - loop.time()
            if settled or remaining <= 0:
                return view
            # A wake-up that never comes (Redis restarted, a change published to another process's
            # in-memory layer) costs at most QM_WAIT_RECHECK_SECONDS.
            await changes.until_settled(timeout=min(remaining, settings.QM_WAIT_RECHECK_SECONDS))


def _read(instance: Instance) -> tuple[dict, bool]:
    """One short use of a database connection: the instance now, and whether it has settled."""
    try:
        instance.refresh_from_db()
        return InstanceOutputSerializer(instance).data, instance.settled
    finally:
        _release_connection()


def _release_connection() -> None:
    """Give this thread's connection back (to the pool, when there is one) for the wait."""
    if not connection.in_atomic_block:  # a test's transaction, never a request's
        connection.close()


class _StatusChanges:
    """This waiter's channel in the instance's group, for as long as it waits."""

    def __init__(self, instance_id: str):
        self.group = instance_group(instance_id)
        self.layer = get_channel_layer()
        self.channel = None

    async def __aenter__(self):
        try:
            channel = await self.layer.new_channel()
            await self.layer.group_add(self.group, channel)
            self.channel = channel
        except OUTAGE_ERRORS:  # Redis is away: the wait goes on by re-reading the instance
            pass
        return self

    async def __aexit__(self, *exc_info):
        if self.channel is not None:
            with contextlib.suppress(*OUTAGE_ERRORS):
                await self.layer.group_discard(self.group, self.channel)

    async def until_settled(self, *, timeout: float) -> None:
        """Return when a published change says the instance has settled, or after `timeout`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.channel is not None:
                    try:
                        message = await self.layer.receive(self.channel)
                    except OUTAGE_ERRORS:
                        # An idle receive ends in Redis' read timeout after a few seconds; or Redis is away.
                        await asyncio.sleep(0.1)
                        continue
                    if _settles(message):
                        return
                await asyncio.sleep(timeout)


def _settles(message: dict) -> bool:
    if message.get("type") != "instance.status":
        return False
    return Instance(status=message["status"], desired_state=message["desired_state"]).settled
