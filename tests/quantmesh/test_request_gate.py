"""The request gate: more requests in flight than the database pool has connections queue on the
event loop instead of failing as an outage; the queue is bounded; a settling wait holds no slot."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.error
import urllib.request

from asgiref.sync import ThreadSensitiveContext, sync_to_async

from accounts.services import api_token_create
from billing.selectors import plan_get
from instances.models import Instance
from quantmesh.request_gate import RequestGate
from tests.db import committing_db

from ..live_server import live_portal


class SlowApp:
    """An ASGI app that reads its body, answers after `seconds` and counts requests inside it."""

    def __init__(self, seconds: float = 0.05, stream_seconds: float = 0.0):
        self.seconds, self.stream_seconds = seconds, stream_seconds
        self.inside = self.peak = 0
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send):
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        try:
            body, more = b"", True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            self.bodies.append(body)
            await asyncio.sleep(self.seconds)
            await send({"type": "http.response.start", "status": 200, "headers": []})
        finally:
            self.inside -= 1
        await asyncio.sleep(self.stream_seconds)  # a streaming body made after the view: no slot held
        await send({"type": "http.response.body", "body": b"ok"})


async def _call(gate, path="/api/x", chunks=(b"",), gap=0.0):
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent = []

    async def receive():
        if messages:
            await asyncio.sleep(gap)
            return messages.pop(0)
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    await gate({"type": "http", "path": path, "method": "POST", "headers": []}, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def test_requests_beyond_the_concurrency_queue_and_all_succeed():
    app = SlowApp(seconds=0.02)
    gate = RequestGate(app, concurrency=3, queue_seconds=30)

    async def burst():
        return await asyncio.gather(*(_call(gate) for _ in range(40)))

    answers = asyncio.run(burst())
    assert [status for status, *_ in answers] == [200] * 40
    assert app.peak == 3


class ThreadRecordingApp:
    """Like Django's ASGIHandler: a ThreadSensitiveContext per request and several thread-sensitive
    sync calls in it; records the thread each call ran on, per request."""

    def __init__(self, stream_seconds: float = 0.0):
        self.stream_seconds = stream_seconds
        self.threads_by_request: list[list[threading.Thread]] = []

    async def __call__(self, scope, receive, send):
        async with ThreadSensitiveContext():
            seen = [await sync_to_async(threading.current_thread)() for _ in range(3)]
            self.threads_by_request.append(seen)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await asyncio.sleep(self.stream_seconds)
            seen.append(await sync_to_async(threading.current_thread)())  # Django's request_finished
            await send({"type": "http.response.body", "body": b"ok"})


def test_requests_run_on_threads_kept_between_requests_one_thread_each():
    """The defect: asgiref started a new thread for every request (and another to join it), and
    each new thread opened its own database connection."""
    app = ThreadRecordingApp()
    gate = RequestGate(app, concurrency=3, queue_seconds=30)

    async def waves():
        for _ in range(10):
            await asyncio.gather(*(_call(gate) for _ in range(3)))

    asyncio.run(waves())
    assert len(app.threads_by_request) == 30
    for threads in app.threads_by_request:
        assert len(set(threads)) == 1, "a request's sync code runs on one thread"
        assert threads[0] is not threading.main_thread()
    distinct = {threads[0] for threads in app.threads_by_request}
    assert len(distinct) <= 3, f"{len(distinct)} threads served 30 requests three at a time"
    assert len({threads[0] for threads in app.threads_by_request[:3]}) == 3, "concurrent requests, own threads"


def test_threads_lent_beyond_the_kept_number_end_when_given_back():
    """Settling waits hold their thread past the slot, so more threads may be lent than slots; only
    as many as the concurrency stay idle afterwards."""
    app = ThreadRecordingApp(stream_seconds=0.2)
    gate = RequestGate(app, concurrency=2, queue_seconds=30)

    async def burst():
        await asyncio.gather(*(_call(gate) for _ in range(8)))

    asyncio.run(burst())
    assert len({threads[0] for threads in app.threads_by_request}) == 8
    assert gate.threads.idle == 2
    for threads in app.threads_by_request:
        assert len(set(threads)) == 1


def test_a_request_cancelled_mid_view_leaves_its_thread_to_finish_alone():
    """Its sync code runs on after the cancel: the next request must not queue behind it."""
    threads: dict[str, threading.Thread] = {}
    slow_view_done = threading.Event()

    class SlowViewApp:
        async def __call__(self, scope, receive, send):
            async with ThreadSensitiveContext():

                def view():
                    threads[scope["path"]] = threading.current_thread()
                    if scope["path"] == "/api/slow":
                        time.sleep(1.5)
                        slow_view_done.set()

                await sync_to_async(view)()
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"ok"})

    gate = RequestGate(SlowViewApp(), concurrency=1, queue_seconds=30)

    async def cancel_then_call():
        slow = asyncio.create_task(_call(gate, path="/api/slow"))
        await asyncio.sleep(0.1)
        slow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await slow
        return await _call(gate, path="/api/next")

    assert asyncio.run(cancel_then_call())[0] == 200
    assert not slow_view_done.is_set(), "the next request was served after the cancelled view ended"
    assert threads["/api/next"] is not threads["/api/slow"]
    assert gate.threads.idle == 1
    slow_view_done.wait(5)


def test_a_wait_past_the_queue_bound_is_503_in_the_api_shape_with_retry_after():
    gate = RequestGate(SlowApp(seconds=0.5), concurrency=1, queue_seconds=0.05)

    async def two():
        return await asyncio.gather(_call(gate), _call(gate), _call(gate, path="/instances/"))

    first, second, page = asyncio.run(two())
    assert first[0] == 200
    status, headers, body = second
    assert status == 503 and headers[b"retry-after"] == b"5"
    assert json.loads(body)["error"]["code"] == "service_unavailable"
    assert "busy" in json.loads(body)["error"]["message"]
    assert page[0] == 503 and page[1][b"content-type"].startswith(b"text/html")


def test_the_slot_is_given_back_when_the_response_starts():
    """A settling wait (a streaming body after the view) must not hold a slot: with one slot, five
    calls that each stream for 0.4 s finish together, not one after the other."""
    app = SlowApp(seconds=0.01, stream_seconds=0.4)
    gate = RequestGate(app, concurrency=1, queue_seconds=0.3)

    async def five():
        loop = asyncio.get_running_loop()
        started = loop.time()
        answers = await asyncio.gather(*(_call(gate) for _ in range(5)))
        return answers, loop.time() - started

    answers, seconds = asyncio.run(five())
    assert [status for status, *_ in answers] == [200] * 5
    assert seconds < 1.0


def test_a_slow_upload_holds_no_slot_and_its_body_arrives_whole():
    app = SlowApp(seconds=0.01)
    gate = RequestGate(app, concurrency=1, queue_seconds=0.2)

    async def upload_beside_quick_calls():
        slow = asyncio.create_task(_call(gate, chunks=(b"a" * 10, b"b" * 10, b"c"), gap=0.3))
        quick = await asyncio.gather(*(_call(gate) for _ in range(5)))
        return await slow, quick

    slow, quick = asyncio.run(upload_beside_quick_calls())
    assert slow[0] == 200 and [status for status, *_ in quick] == [200] * 5
    assert b"a" * 10 + b"b" * 10 + b"c" in app.bodies


def test_a_client_gone_before_its_body_arrived_takes_no_slot():
    app = SlowApp()
    gate = RequestGate(app, concurrency=1, queue_seconds=0.1)

    async def gone():
        async def receive():
            return {"type": "http.disconnect"}

        async def send(message):
            raise AssertionError("nothing is sent to a client that left")

        await gate({"type": "http", "path": "/api/x", "method": "POST", "headers": []}, receive, send)
        return await _call(gate)

    assert asyncio.run(gone())[0] == 200
    assert app.peak == 1


@committing_db
def test_a_burst_larger_than_the_pool_is_served_without_outage_answers(user, subscribe):
    """The defect: with more requests in flight than pooled connections, the surplus waited out
    DATABASE_POOL_TIMEOUT and answered 503 although nothing was down."""
    subscribe(user, "enterprise")
    Instance.objects.bulk_create(
        Instance(
            instance_id=f"qm-g{n:05d}-1700000000", slug=f"g{n:05d}", owner=user, plan=plan_get(code="personal"),
            status="running", image="x", proxy_secret_encrypted="x",
        )
        for n in range(30)
    )
    token = api_token_create(user=user)[1]
    answers: list[int] = []
    with live_portal(
        DJANGO_SETTINGS_MODULE="quantmesh.settings.base", DATABASE_POOL_SIZE="2", DATABASE_POOL_TIMEOUT="0.3",
        QM_API_USER_RATE="1000000/minute",
    ) as (base, _):
        def client():
            for _ in range(4):
                request = urllib.request.Request(
                    f"{base}/api/saas/instances", headers={"Authorization": f"Bearer {token}"}
                )
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        response.read()
                        answers.append(response.status)
                except urllib.error.HTTPError as error:
                    answers.append(error.code)

        threads = [threading.Thread(target=client) for _ in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(answers) == 160
    assert sorted(set(answers)) == [200], {code: answers.count(code) for code in set(answers)}

