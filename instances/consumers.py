"""WS /api/saas/instances/<id>/logs/stream: the last N lines, then live lines, numbered.

Authentication: `Authorization: Bearer` (wscat -H), the `bearer` subprotocol carrying the token
(browsers cannot set headers), or the console's session cookie from an allowed Origin. Unknown
and foreign instances close alike (4404); an address guessing tokens is refused like on HTTP
(4429 while blocked), and so is a user who already holds QM_LOGSTREAMS_PER_USER open streams
(4429). Messages are JSON:
  {"type": "logs", "seq": <first line's number>, "lines": [...]}   consecutive numbers per batch
  {"type": "gap", "from": a, "to": b}    lines a..b are gone (older than the buffer)
  {"type": "status", "status": ..., "kind": ...}   the instance stopped, restarted, was deleted...
  {"type": "event", "event": {...}}      what happened, as GET /api/saas/instances/<id>/events shows it
  {"type": "heartbeat", "at": ...}       every 20 s, so proxies keep idle connections open
Query: `lines` (1–10000, default 100) for the backlog, or `since=<seq>` to resume after a number.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import parse_qs, urlparse

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed, Throttled

from accounts.authentication import bearer_authenticate
from accounts.requests import scope_client_ip
from accounts.selectors import user_has_two_factor
from quantmesh.outages import OUTAGE_ERRORS

from . import logstream, selectors
from .events import instance_group

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_BAD_REQUEST = 4400
CLOSE_RATE_LIMITED = 4429


def _header(scope, name: bytes) -> str:
    return next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == name), "")


@database_sync_to_async
def _user_from_token(raw: str, scope):
    """The token's user; None for an unknown token; Throttled while the address guesses tokens."""
    try:
        return bearer_authenticate(raw, ip=scope_client_ip(scope))[0]
    except AuthenticationFailed:
        return None


@database_sync_to_async
def _session_user(scope):
    """The console's logged-in user, if the Origin is ours and the second factor (if any) was passed."""
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return None
    origin = urlparse(_header(scope, b"origin"))
    host = _header(scope, b"host")
    allowed = {host, *(urlparse(o).netloc for o in settings.CSRF_TRUSTED_ORIGINS)}
    if not origin.netloc or origin.netloc not in allowed:
        return None
    if user_has_two_factor(user) and not scope["session"].get("otp_device_id"):
        return None
    return user


def _slot_ttl() -> int:
    # A slot outlives a few missed heartbeats, so a process that died frees its viewers' slots.
    return int(settings.QM_WS_HEARTBEAT_SECONDS * 3) + 5


def stream_slot_claim(user_id: int, channel_name: str) -> str | None:
    """One of the user's QM_LOGSTREAMS_PER_USER stream slots (an atomic add in the shared cache),
    or None when all are taken."""
    for slot in range(settings.QM_LOGSTREAMS_PER_USER):
        key = f"logstream-slot:{user_id}:{slot}"
        if cache.add(key, channel_name, timeout=_slot_ttl()):
            return key
    return None


def stream_slot_renew(key: str, channel_name: str) -> None:
    if cache.get(key) in (None, channel_name):
        cache.set(key, channel_name, timeout=_slot_ttl())


def stream_slot_release(key: str, channel_name: str) -> None:
    if cache.get(key) == channel_name:
        cache.delete(key)


class LogStreamConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.instance_id = self.scope["url_route"]["kwargs"]["instance_id"]
        self.last_seq = 0
        self.groups_joined: list[str] = []
        self.live: asyncio.Queue | None = None  # batches of live lines, from this process's fan-out
        self.heartbeat_task = self.relay_task = None
        self.slot = None
        # The heartbeat's repair and the live batches both send lines: one at a time.
        self.send_lock = asyncio.Lock()
        query = parse_qs(self.scope.get("query_string", b"").decode())
        subprotocol = None
        user = None
        authorization = _header(self.scope, b"authorization")
        protocols = self.scope.get("subprotocols") or []
        throttled = False
        try:
            if authorization.lower().startswith("bearer "):
                user = await _user_from_token(authorization[7:].strip(), self.scope)
            elif len(protocols) == 2 and protocols[0] == "bearer":
                user = await _user_from_token(protocols[1], self.scope)
                subprotocol = "bearer"
            else:
                user = await _session_user(self.scope)
        except Throttled:
            throttled = True
        # Accept first, so a refusal reaches the client as a close code it can act on (not an HTTP 403).
        await self.accept(subprotocol=subprotocol)
        if throttled:
            await self.close(code=CLOSE_RATE_LIMITED)
            return
        if user is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        instance = await database_sync_to_async(selectors.instance_get)(owner=user, instance_id=self.instance_id)
        if instance is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        try:
            lines = int(query.get("lines", ["100"])[0])
            since = int(query["since"][0]) if "since" in query else None
            if not 1 <= lines <= 10000 or (since is not None and since < 0):
                raise ValueError
        except ValueError:
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        self.slot = await sync_to_async(stream_slot_claim)(user.pk, self.channel_name)
        if self.slot is None:
            await self.close(code=CLOSE_RATE_LIMITED)
            return

        group = instance_group(self.instance_id)
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.append(group)
        self.live = asyncio.Queue()
        await logstream.live_fanout().join(self.instance_id, self.live)
        store = logstream.hub()
        await sync_to_async(store.viewer_touch)(self.instance_id, self.channel_name)
        await sync_to_async(logstream.ensure_follower)(self.instance_id, asyncio.get_running_loop())
        if since is not None:
            await self._send_after(since)
        else:
            backlog = await sync_to_async(store.tail)(self.instance_id, lines)
            await self._send_lines(backlog)
        await self.send(
            json.dumps(
                {
                    "type": "status",
                    "status": instance.status,
                    "desired_state": instance.desired_state,
                    "kind": "connected",
                }
            )
        )
        self.heartbeat_task = asyncio.create_task(self._heartbeat())
        self.relay_task = asyncio.create_task(self._relay_live())

    async def disconnect(self, code):
        for task in (self.heartbeat_task, self.relay_task):
            if task:
                task.cancel()
        if self.live is not None:
            await logstream.live_fanout().leave(self.instance_id, self.live)
        if self.slot:
            await sync_to_async(stream_slot_release)(self.slot, self.channel_name)
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        if self.groups_joined:
            await sync_to_async(logstream.hub().viewer_remove)(self.instance_id, self.channel_name)

    async def _heartbeat(self):
        while True:
            await asyncio.sleep(settings.QM_WS_HEARTBEAT_SECONDS)
            try:
                await self._renew()
            except OUTAGE_ERRORS:  # Redis is away: the viewer keeps its socket; tried again next beat
                logger.warning("log stream heartbeat for %s: Redis unavailable", self.instance_id)
            await self.send(json.dumps({"type": "heartbeat", "at": timezone.now().isoformat()}))

    async def _renew(self):
        """What a Redis restart may have lost: the viewer's mark, the group membership, the follower
        (or a follower in a process that died), and lines published while this viewer was not in
        the group."""
        store = logstream.hub()
        await sync_to_async(store.viewer_touch)(self.instance_id, self.channel_name)
        await sync_to_async(stream_slot_renew)(self.slot, self.channel_name)
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await sync_to_async(logstream.ensure_follower)(self.instance_id, asyncio.get_running_loop())
        newest = await sync_to_async(store.newest_seq)(self.instance_id)
        if newest is not None and newest > self.last_seq:  # the buffer is read only when lines were missed
            async with self.send_lock:
                await self._send_after(self.last_seq)

    async def _send_lines(self, lines: list[logstream.Line]):
        if lines:
            await self._send_batch(logstream.Batch.of(lines[0].seq, [line.text for line in lines]))

    async def _send_batch(self, batch: logstream.Batch):
        await self.send(batch.frame)
        self.last_seq = batch.seq + len(batch.lines) - 1

    async def _send_after(self, seq: int):
        """Everything after `seq` from the buffer; what the buffer no longer holds is reported as a gap."""
        store = logstream.hub()
        oldest = await sync_to_async(store.oldest_seq)(self.instance_id)
        if oldest is not None and oldest > seq + 1:
            await self.send(json.dumps({"type": "gap", "from": seq + 1, "to": oldest - 1}))
        await self._send_lines(await sync_to_async(store.after)(self.instance_id, seq))

    async def _relay_live(self):
        while True:
            batch = await self.live.get()
            try:
                async with self.send_lock:
                    await self._relay(batch)
            except OUTAGE_ERRORS:  # a repair from the buffer needs Redis: the heartbeat tries again
                logger.warning("log stream relay for %s: Redis unavailable", self.instance_id)

    async def _relay(self, batch: logstream.Batch):
        first, lines = batch.seq, batch.lines
        end = first + len(lines) - 1
        if end <= self.last_seq:
            return  # already sent (from the backlog)
        if self.last_seq and first > self.last_seq + 1:
            # Batches were lost on the way (pub/sub reconnecting): repair from the buffer.
            await self._send_after(self.last_seq)
            return
        skip = max(0, self.last_seq + 1 - first) if self.last_seq else 0
        if skip == 0:
            await self._send_batch(batch)  # the frame every viewer gets, encoded once
        else:
            await self._send_lines([logstream.Line(first + i, text) for i, text in enumerate(lines) if i >= skip])

    async def instance_status(self, event):
        await self.send(
            json.dumps(
                {
                    "type": "status",
                    "status": event["status"],
                    "desired_state": event.get("desired_state"),
                    "kind": event["kind"],
                    "at": event["at"],
                }
            )
        )
        await self.send(json.dumps({"type": "event", "event": event["event"]}))
