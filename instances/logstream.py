"""Live logs: one follower per instance, however many viewers; numbered lines in a shared buffer.

A follower thread reads the runtime's log stream, batches lines (published as soon as they come,
at most one batch every 50 ms), numbers them in a buffer shared by every portal process, and
publishes each batch once, as the websocket frame viewers receive, encoded once: on the Redis
channel `qm:logs:<instance_id>:live`, to which each portal process holds one subscription (for
all its viewers of all instances), or straight to the process's viewers in the embedded default.
Each process hands a batch to its viewers in memory (`LiveFanout`). Viewers start from the buffer
(the last N lines, or everything after a sequence number they already have) and fill any gap in
what was delivered from it (pub/sub drops what arrives while a subscription reconnects).

Coordination lives in Redis when configured (any daphne process may host the follower; a lock
with a short lease hands it over when that process dies) and in memory for the embedded default.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import redis
import redis.asyncio
import redis.exceptions
from django.conf import settings

from .runtime import get_backend
from .runtime.base import BackendError, RuntimeState

logger = logging.getLogger(__name__)
BUFFER_LINES = 10_000
BATCH_SECONDS = 0.05  # lines coming in a stream leave together, at most this often
HOUSEKEEPING_SECONDS = 1.0  # lease renewal and the viewer count, apart from the batches
LEASE_SECONDS = 6
VIEWER_TTL_SECONDS = 60  # a viewer that stops renewing (crashed process) is forgotten after this
IDLE_GRACE_SECONDS = 10  # the follower lingers this long after the last viewer left (at least two heartbeats)


def live_channel(instance_id: str) -> str:
    return f"qm:logs:{instance_id}:live"


@dataclass(frozen=True)
class Line:
    seq: int
    text: str


@runtime_checkable
class LogHub(Protocol):
    """Where followers and viewers meet: the numbered line buffer, the follower's lease, the viewers
    and the last line's time, per instance. MemoryHub (one process) and RedisHub (several) are the two."""

    def append(self, instance_id: str, lines: list[str], after: int = 0) -> int:
        """Number `lines` from past `after` (and the last number given); returns the first number."""
        ...

    def after(self, instance_id: str, seq: int) -> list[Line]: ...

    def tail(self, instance_id: str, count: int) -> list[Line]: ...

    def oldest_seq(self, instance_id: str) -> int | None: ...

    def newest_seq(self, instance_id: str) -> int | None: ...

    def acquire(self, instance_id: str, owner: str) -> bool:
        """Take the follower's lease unless someone holds it."""
        ...

    def renew(self, instance_id: str, owner: str) -> bool: ...

    def release(self, instance_id: str, owner: str) -> None: ...

    def viewer_touch(self, instance_id: str, viewer: str) -> None: ...

    def viewer_remove(self, instance_id: str, viewer: str) -> None: ...

    def viewer_count(self, instance_id: str) -> int: ...

    def get_last_time(self, instance_id: str) -> str | None: ...

    def set_last_time(self, instance_id: str, stamp: str) -> None: ...


@dataclass(frozen=True)
class Batch:
    """Consecutive lines from `seq` on, with the websocket frame that carries them all."""

    seq: int
    lines: list[str]
    frame: str

    @classmethod
    def of(cls, seq: int, lines: list[str]) -> Batch:
        return cls(seq, lines, json.dumps({"type": "logs", "seq": seq, "lines": lines}))

    @classmethod
    def from_frame(cls, frame: str) -> Batch:
        message = json.loads(frame)
        return cls(message["seq"], message["lines"], frame)


class MemoryHub:
    """Embedded default: one process, so plain structures under a lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.buffers: dict[str, deque] = {}
        self.next_seq: dict[str, int] = {}
        self.leases: dict[str, float] = {}
        self.viewers: dict[str, dict[str, float]] = {}
        self.last_time: dict[str, str] = {}

    def append(self, instance_id: str, lines: list[str], after: int = 0) -> int:
        with self.lock:
            first = max(self.next_seq.get(instance_id, 1), after + 1)
            buffer = self.buffers.setdefault(instance_id, deque(maxlen=BUFFER_LINES))
            buffer.extend(Line(first + i, text) for i, text in enumerate(lines))
            self.next_seq[instance_id] = first + len(lines)
            return first

    def after(self, instance_id: str, seq: int) -> list[Line]:
        with self.lock:
            return [line for line in self.buffers.get(instance_id, ()) if line.seq > seq]

    def tail(self, instance_id: str, count: int) -> list[Line]:
        with self.lock:
            return list(self.buffers.get(instance_id, ()))[-count:]

    def oldest_seq(self, instance_id: str) -> int | None:
        return self._edge_seq(instance_id, 0)

    def newest_seq(self, instance_id: str) -> int | None:
        return self._edge_seq(instance_id, -1)

    def _edge_seq(self, instance_id: str, index: int) -> int | None:
        with self.lock:
            buffer = self.buffers.get(instance_id)
            return buffer[index].seq if buffer else None

    def acquire(self, instance_id: str, owner: str) -> bool:
        with self.lock:
            if self.leases.get(instance_id, 0) > time.time():
                return False
            self.leases[instance_id] = time.time() + LEASE_SECONDS
            return True

    def renew(self, instance_id: str, owner: str) -> bool:
        with self.lock:
            self.leases[instance_id] = time.time() + LEASE_SECONDS
            return True

    def release(self, instance_id: str, owner: str) -> None:
        with self.lock:
            self.leases.pop(instance_id, None)

    def viewer_touch(self, instance_id: str, viewer: str) -> None:
        with self.lock:
            self.viewers.setdefault(instance_id, {})[viewer] = time.time() + VIEWER_TTL_SECONDS

    def viewer_remove(self, instance_id: str, viewer: str) -> None:
        with self.lock:
            self.viewers.get(instance_id, {}).pop(viewer, None)

    def viewer_count(self, instance_id: str) -> int:
        now = time.time()
        with self.lock:
            viewers = self.viewers.get(instance_id, {})
            for name in [n for n, expiry in viewers.items() if expiry < now]:
                viewers.pop(name)
            return len(viewers)

    def get_last_time(self, instance_id: str) -> str | None:
        return self.last_time.get(instance_id)

    def set_last_time(self, instance_id: str, stamp: str) -> None:
        self.last_time[instance_id] = stamp


class RedisHub:
    """Several portal processes: the same operations on Redis."""

    def __init__(self, url: str):
        self.redis = redis.Redis.from_url(url)

    @staticmethod
    def _key(instance_id: str, what: str) -> str:
        return f"qm:logs:{instance_id}:{what}"

    def append(self, instance_id: str, lines: list[str], after: int = 0) -> int:
        """Number the lines after everything numbered so far, and after `after` (the caller's last
        number: after a Redis restart lost the counter, numbering goes on instead of starting again)."""
        pipe = self.redis.pipeline()
        pipe.set(self._key(instance_id, "seq"), after, nx=True)
        pipe.incrby(self._key(instance_id, "seq"), len(lines))
        last = pipe.execute()[1]
        first = last - len(lines) + 1
        pipe = self.redis.pipeline()
        pipe.rpush(self._key(instance_id, "buffer"), *[json.dumps([first + i, text]) for i, text in enumerate(lines)])
        pipe.ltrim(self._key(instance_id, "buffer"), -BUFFER_LINES, -1)
        pipe.execute()
        return first

    def _lines(self, raw) -> list[Line]:
        return [Line(*json.loads(item)) for item in raw]

    def after(self, instance_id: str, seq: int) -> list[Line]:
        return [
            line for line in self._lines(self.redis.lrange(self._key(instance_id, "buffer"), 0, -1)) if line.seq > seq
        ]

    def tail(self, instance_id: str, count: int) -> list[Line]:
        return self._lines(self.redis.lrange(self._key(instance_id, "buffer"), -count, -1))

    def oldest_seq(self, instance_id: str) -> int | None:
        return self._edge_seq(instance_id, 0)

    def newest_seq(self, instance_id: str) -> int | None:
        return self._edge_seq(instance_id, -1)

    def _edge_seq(self, instance_id: str, index: int) -> int | None:
        item = self.redis.lindex(self._key(instance_id, "buffer"), index)
        return json.loads(item)[0] if item else None

    def acquire(self, instance_id: str, owner: str) -> bool:
        return bool(self.redis.set(self._key(instance_id, "lease"), owner, nx=True, ex=LEASE_SECONDS))

    def renew(self, instance_id: str, owner: str) -> bool:
        key = self._key(instance_id, "lease")
        holder = self.redis.get(key)
        if holder is None:  # expired, or Redis restarted empty: take it again unless someone else did
            return bool(self.redis.set(key, owner, nx=True, ex=LEASE_SECONDS))
        if holder != owner.encode():
            return False
        return bool(self.redis.set(key, owner, xx=True, ex=LEASE_SECONDS))

    def release(self, instance_id: str, owner: str) -> None:
        key = self._key(instance_id, "lease")
        if self.redis.get(key) == owner.encode():
            self.redis.delete(key)

    def viewer_touch(self, instance_id: str, viewer: str) -> None:
        self.redis.zadd(self._key(instance_id, "viewers"), {viewer: time.time() + VIEWER_TTL_SECONDS})

    def viewer_remove(self, instance_id: str, viewer: str) -> None:
        self.redis.zrem(self._key(instance_id, "viewers"), viewer)

    def viewer_count(self, instance_id: str) -> int:
        key = self._key(instance_id, "viewers")
        self.redis.zremrangebyscore(key, "-inf", time.time())
        return self.redis.zcard(key)

    def get_last_time(self, instance_id: str) -> str | None:
        value = self.redis.get(self._key(instance_id, "last_time"))
        return value.decode() if value else None

    def set_last_time(self, instance_id: str, stamp: str) -> None:
        self.redis.set(self._key(instance_id, "last_time"), stamp)


_hub: LogHub | None = None
_hub_guard = threading.Lock()


def hub() -> LogHub:
    global _hub
    with _hub_guard:
        if _hub is None:
            _hub = RedisHub(settings.REDIS_URL) if settings.REDIS_URL else MemoryHub()
        return _hub


class LiveFanout:
    """This process's viewers of live lines: each batch reaches the process once and is put on the
    queue of every local viewer of its instance (who sends the batch's frame as it is).

    The embedded default is one process: the follower hands its batches over directly."""

    def __init__(self):
        self.queues: dict[str, set[asyncio.Queue]] = {}

    def publish(self, instance_id: str, batch: Batch, loop: asyncio.AbstractEventLoop) -> None:
        """From the follower's thread."""
        loop.call_soon_threadsafe(self.deliver, instance_id, batch)

    def deliver(self, instance_id: str, batch: Batch) -> None:
        for queue in self.queues.get(instance_id, ()):
            queue.put_nowait(batch)

    async def join(self, instance_id: str, queue: asyncio.Queue) -> None:
        self.queues.setdefault(instance_id, set()).add(queue)

    async def leave(self, instance_id: str, queue: asyncio.Queue) -> None:
        viewers = self.queues.get(instance_id, set())
        viewers.discard(queue)
        if not viewers:
            self.queues.pop(instance_id, None)


class RedisLiveFanout(LiveFanout):
    """Several portal processes: batches travel on Redis pub/sub, one subscription per process
    (a channel per instance that the process has viewers of)."""

    def __init__(self, url: str):
        super().__init__()
        self.publisher = redis.Redis.from_url(url)  # the followers' threads
        self.pubsub = redis.asyncio.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self.listener: asyncio.Task | None = None

    def publish(self, instance_id: str, batch: Batch, loop: asyncio.AbstractEventLoop) -> None:
        self.publisher.publish(live_channel(instance_id), batch.frame)

    async def join(self, instance_id: str, queue: asyncio.Queue) -> None:
        first = instance_id not in self.queues
        await super().join(instance_id, queue)
        if first:
            await self.pubsub.subscribe(live_channel(instance_id))
        if self.listener is None or self.listener.done():
            self.listener = asyncio.create_task(self._listen())

    async def leave(self, instance_id: str, queue: asyncio.Queue) -> None:
        await super().leave(instance_id, queue)
        if instance_id not in self.queues:
            await self.pubsub.unsubscribe(live_channel(instance_id))

    async def _listen(self) -> None:
        while True:
            try:
                message = await self.pubsub.get_message(timeout=1.0)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                # Redis is away: the next call reconnects and subscribes again; what was published
                # meanwhile reaches viewers from the buffer (their next batch shows the gap).
                await asyncio.sleep(0.5)
                continue
            if message is not None and message["type"] == "message":
                instance_id = message["channel"].decode().split(":")[2]
                self.deliver(instance_id, Batch.from_frame(message["data"].decode()))


_live_fanout = None


def live_fanout() -> LiveFanout:
    global _live_fanout
    with _hub_guard:
        if _live_fanout is None:
            _live_fanout = RedisLiveFanout(settings.REDIS_URL) if settings.REDIS_URL else LiveFanout()
        return _live_fanout


def _line_time(text: str) -> str | None:
    stamp = text.split(" ", 1)[0]
    return stamp if stamp[:4].isdigit() and stamp.endswith("Z") else None


class Follower(threading.Thread):
    """Follows one instance's log stream while anyone watches; hands over on process death."""

    def __init__(self, instance_id: str, owner: str, loop: asyncio.AbstractEventLoop):
        super().__init__(name=f"logs-{instance_id}", daemon=True)
        self.instance_id = instance_id
        self.owner = owner
        # The server's event loop: channel layers (and the in-memory one above all) must be used from it.
        self.loop = loop
        self.pending: list[str] = []
        self.pending_lock = threading.Lock()
        self.arrived = threading.Event()  # lines wait in `pending`
        self.stopped = threading.Event()
        self.last_seq = 0  # the last number given to a line by this follower

    def publish(self) -> None:
        with self.pending_lock:
            lines, self.pending = self.pending, []
        if not lines:
            return
        store = hub()
        try:
            first = store.append(self.instance_id, lines, after=self.last_seq)
        except Exception:
            with self.pending_lock:  # Redis is away: keep the lines for the next batch, in order
                self.pending[:0] = lines
            raise
        self.last_seq = first + len(lines) - 1
        stamp = next((s for s in map(_line_time, reversed(lines)) if s), None)
        if stamp:
            store.set_last_time(self.instance_id, stamp)
        live_fanout().publish(self.instance_id, Batch.of(first, lines), self.loop)

    def _flusher(self) -> None:
        store = hub()
        idle_since = None
        housekeeping_at = 0.0
        while not self.stopped.is_set():
            self.arrived.wait(HOUSEKEEPING_SECONDS)
            self.arrived.clear()
            try:
                self.publish()
                if time.monotonic() >= housekeeping_at:
                    housekeeping_at = time.monotonic() + HOUSEKEEPING_SECONDS
                    if not store.renew(self.instance_id, self.owner):
                        self.stopped.set()  # someone else follows now
                    if store.viewer_count(self.instance_id) == 0:
                        idle_since = idle_since or time.monotonic()
                        # Viewers renew their mark each heartbeat, also after Redis restarted empty.
                        grace = max(IDLE_GRACE_SECONDS, 2 * settings.QM_WS_HEARTBEAT_SECONDS)
                        if time.monotonic() - idle_since > grace:
                            self.stopped.set()
                    else:
                        idle_since = None
            except Exception:  # keep following: a failed publish is retried with the next batch
                logger.warning("log relay for %s failed to publish", self.instance_id, exc_info=True)
            self.stopped.wait(BATCH_SECONDS)  # what comes meanwhile leaves in the next batch

    def run(self) -> None:
        flusher = threading.Thread(target=self._flusher, daemon=True)
        flusher.start()
        backend = get_backend()
        try:
            while not self.stopped.is_set():
                last = hub().get_last_time(self.instance_id)
                since = datetime.fromisoformat(last.replace("Z", "+00:00")) if last else datetime.now(UTC)
                try:
                    if backend.status(self.instance_id).state == RuntimeState.RUNNING:
                        for text in backend.follow_logs(self.instance_id, since=since):
                            with self.pending_lock:
                                self.pending.append(text)
                            self.arrived.set()
                            if self.stopped.is_set():
                                break
                except BackendError:
                    pass
                self.stopped.wait(1.0)  # stopped or restarting: look again shortly
        finally:
            self.stopped.set()
            self.arrived.set()
            flusher.join()
            self.publish()
            hub().release(self.instance_id, self.owner)
            with _followers_guard:
                _followers.pop(self.instance_id, None)


_followers: dict[str, Follower] = {}
_followers_guard = threading.Lock()
PROCESS_ID = f"{__import__('socket').gethostname()}:{__import__('os').getpid()}"


def ensure_follower(instance_id: str, loop: asyncio.AbstractEventLoop) -> None:
    """Start this process's follower for the instance unless one runs somewhere already.

    The first follower primes the buffer with the lines written before anyone watched."""
    with _followers_guard:
        if instance_id in _followers:
            return
        store = hub()
        if not store.acquire(instance_id, PROCESS_ID):
            return
        if store.get_last_time(instance_id) is None:
            backlog = get_backend().logs(instance_id, tail=1000)
            if backlog:
                store.append(instance_id, backlog)
                stamp = next((s for s in map(_line_time, reversed(backlog)) if s), None)
                if stamp:
                    store.set_last_time(instance_id, stamp)
        follower = Follower(instance_id, PROCESS_ID, loop)
        _followers[instance_id] = follower
        follower.start()
