"""At most QM_REQUEST_CONCURRENCY HTTP requests of one process run Django's (sync) code at once; the
others wait their turn on the event loop.

Why: under ASGI every in-flight request runs on a thread of its own and that thread takes a pooled
database connection. With more requests in flight than the pool has connections, the surplus
waited DATABASE_POOL_TIMEOUT inside the pool and then failed as an outage (503) although nothing
was down: a burst of 200 clients turned into errors instead of into latency. Waiting here costs a
coroutine, not a thread or a connection, so the default size is the pool's.

The wait is bounded: past QM_REQUEST_QUEUE_SECONDS the answer is 503 with Retry-After (the process
is overloaded, and saying so beats an answer the client has stopped waiting for). A slot is taken
once the request's body has arrived, so a slow upload holds none, and it is given back when the
response starts: a `wait=1` call's settling wait (a streaming body) holds nothing.

An admitted request runs its Django code on a thread the process keeps (RequestThreads) instead of
on a new one: asgiref otherwise starts a thread for every request and a second one to join it, and
each new thread opened its own database connection (a fifth of a short API request's cost).
"""

from __future__ import annotations

import asyncio
import json
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings

from quantmesh.errors import error_body
from quantmesh.outages import PAGE, RETRY_AFTER_SECONDS

BUSY_MESSAGE = "The portal is busy; please retry in a few seconds."


class RequestThreads:
    """Single-thread executors that requests borrow in turn, so each request's sync code still runs
    on one thread of its own (Django's connections and transactions are per thread) while threads
    outlive requests. The most recently returned is lent first; past `keep` idle ones (more were
    lent while `wait=1` calls settled), a returned one is shut down."""

    def __init__(self, *, keep: int):
        self.keep = keep
        self._idle: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()

    def lend(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    def give_back(self, executor: ThreadPoolExecutor, *, idle: bool) -> None:
        """`idle`: the request ended normally, so nothing of it still runs on the thread (a request
        cancelled mid-view leaves its sync code running; the next borrower would wait behind it)."""
        with self._lock:
            if idle and len(self._idle) < self.keep:
                self._idle.append(executor)
                return
        executor.shutdown(wait=False)

    @property
    def idle(self) -> int:
        return len(self._idle)


class RequestGate:
    def __init__(self, app, *, concurrency: int | None = None, queue_seconds: float | None = None):
        self.app = app
        self.concurrency = concurrency or settings.QM_REQUEST_CONCURRENCY
        self.queue_seconds = queue_seconds if queue_seconds is not None else settings.QM_REQUEST_QUEUE_SECONDS
        self.threads = RequestThreads(keep=self.concurrency)
        # One semaphore per event loop (a test server and the code under test may each run one).
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop not in self._slots:
            self._slots[loop] = asyncio.Semaphore(self.concurrency)
        return self._slots[loop]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        receive, disconnected = await _body_read_ahead(receive, limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        if disconnected:
            return None
        slots = self._semaphore()
        try:
            await asyncio.wait_for(slots.acquire(), timeout=self.queue_seconds)
        except TimeoutError:
            return await _busy(scope, send)
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        async def send_releasing(message):
            if message["type"] == "http.response.start":
                release()
            await send(message)

        executor = self.threads.lend()
        ended = False
        try:
            # Django's own ThreadSensitiveContext inside finds this one and keeps it.
            async with ThreadSensitiveContext(executor=executor):
                answer = await self.app(scope, receive, send_releasing)
            ended = True
            return answer
        finally:
            release()
            self.threads.give_back(executor, idle=ended)


async def _body_read_ahead(receive, *, limit: int | None):
    """Read the request body before taking a slot (up to `limit` bytes; a larger body is left to
    stream, and RequestSizeLimitMiddleware refuses it from its Content-Length). Returns the receive
    callable that replays it, and whether the client went away meanwhile."""
    buffered = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return receive, True
        buffered.append(message)
        size += len(message.get("body", b""))
        if not message.get("more_body", False) or (limit is not None and size > limit):
            break

    async def replay():
        return buffered.pop(0) if buffered else await receive()

    return replay, False


async def _busy(scope, send) -> None:
    headers = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
    if scope["path"].startswith("/api/"):
        body = json.dumps(error_body("service_unavailable", BUSY_MESSAGE)).encode()
        headers.append((b"content-type", b"application/json"))
    else:
        body = PAGE.encode()
        headers.append((b"content-type", b"text/html; charset=utf-8"))
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
