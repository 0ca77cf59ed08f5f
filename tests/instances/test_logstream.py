"""Live logs over WebSocket through a real daphne, with a real websocket client and real engines."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from accounts.services import api_token_create
from tests.db import committing_db

from ..live_server import live_portal

pytestmark = committing_db


def api(base: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        base + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=90) as response:
        return json.loads(response.read())


@pytest.fixture
def portal(runtime, customer):
    _, token = api_token_create(user=customer)
    with live_portal(QM_WS_HEARTBEAT_SECONDS="1") as (base, process):
        instance = api(base, token, "POST", "/api/saas/instances/create", {"plan": "personal"})
        assert instance["status"] == "running", instance["last_failure_reason"]
        yield base, token, instance["instance_id"], process


def ws_url(base: str, instance_id: str, query: str = "") -> str:
    return base.replace("http://", "ws://") + f"/api/saas/instances/{instance_id}/logs/stream{query}"


async def collect(ws, until, seconds: float = 20.0) -> list[dict]:
    """Messages until `until(messages)` holds (or the time is up)."""
    messages: list[dict] = []
    deadline = time.monotonic() + seconds
    while not until(messages) and time.monotonic() < deadline:
        try:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=deadline - time.monotonic())))
        except TimeoutError:
            break
    return messages


def numbered(messages: list[dict]) -> list[tuple[int, str]]:
    lines = []
    for message in messages:
        if message["type"] == "logs":
            lines += [(message["seq"] + i, text) for i, text in enumerate(message["lines"])]
    return lines


def test_backlog_then_live_lines_with_a_bearer_header(portal):
    base, token, instance_id, _ = portal

    async def scenario():
        async with websockets.connect(
            ws_url(base, instance_id, "?lines=5"), additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            first = await collect(ws, lambda m: any(x["type"] == "status" for x in m))
            backlog = numbered(first)
            assert 1 <= len(backlog) <= 5 and "engine started" in " ".join(t for _, t in backlog)
            # A restart makes the engine write new lines; they arrive live, numbered on.
            await asyncio.to_thread(api, base, token, "POST", f"/api/saas/instances/{instance_id}/restart")
            later = await collect(
                ws,
                lambda m: (
                    any("engine started" in t for _, t in numbered(m)) and any(x.get("kind") == "running" for x in m)
                ),
            )
            kinds = [m.get("kind") for m in later if m["type"] == "status"]
            assert "restart_requested" in kinds and "running" in kinds
            lines = backlog + numbered(later)
            assert [seq for seq, _ in lines] == list(range(lines[0][0], lines[0][0] + len(lines)))
            heartbeat = await collect(ws, lambda m: any(x["type"] == "heartbeat" for x in m), seconds=5)
            assert heartbeat[-1]["type"] == "heartbeat"

    asyncio.run(scenario())


def test_bearer_subprotocol_for_browsers(portal):
    base, token, instance_id, _ = portal

    async def scenario():
        async with websockets.connect(ws_url(base, instance_id), subprotocols=["bearer", token]) as ws:
            assert ws.subprotocol == "bearer"
            messages = await collect(ws, lambda m: any(x["type"] == "status" for x in m))
            assert numbered(messages)

    asyncio.run(scenario())


@pytest.mark.parametrize("who", ["nobody", "stranger", "unknown-instance"])
def test_others_are_turned_away(portal, make_user, who):
    base, token, instance_id, _ = portal
    headers = {}
    target = instance_id
    if who == "stranger":
        _, other = api_token_create(user=make_user())
        headers = {"Authorization": f"Bearer {other}"}
    elif who == "unknown-instance":
        headers = {"Authorization": f"Bearer {token}"}
        target = "qm-zzzzzz-1700000000"

    async def scenario():
        async with websockets.connect(ws_url(base, target), additional_headers=headers) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            return closed.value.rcvd.code

    code = asyncio.run(scenario())
    assert code == (4401 if who == "nobody" else 4404)


def test_resume_after_a_sequence_number(portal):
    base, token, instance_id, _ = portal
    headers = {"Authorization": f"Bearer {token}"}

    async def scenario():
        async with websockets.connect(ws_url(base, instance_id), additional_headers=headers) as ws:
            seen = numbered(await collect(ws, lambda m: any(x["type"] == "status" for x in m)))
        last = seen[-1][0]
        await asyncio.to_thread(api, base, token, "POST", f"/api/saas/instances/{instance_id}/restart")
        await asyncio.sleep(1.5)
        async with websockets.connect(ws_url(base, instance_id, f"?since={last}"), additional_headers=headers) as ws:
            resumed = numbered(await collect(ws, lambda m: any(x["type"] == "status" for x in m)))
        assert resumed and resumed[0][0] == last + 1
        assert [seq for seq, _ in resumed] == list(range(last + 1, last + 1 + len(resumed)))

    asyncio.run(scenario())


def test_stop_and_start_are_announced_and_the_stream_resumes(portal):
    base, token, instance_id, _ = portal

    async def scenario():
        async with websockets.connect(
            ws_url(base, instance_id), additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            await collect(ws, lambda m: any(x["type"] == "status" for x in m))
            await asyncio.to_thread(api, base, token, "POST", f"/api/saas/instances/{instance_id}/stop")
            stopped = await collect(ws, lambda m: any(x.get("status") == "stopped" for x in m))
            assert any(x.get("status") == "stopped" for x in stopped)
            await asyncio.to_thread(api, base, token, "POST", f"/api/saas/instances/{instance_id}/start")
            after = await collect(ws, lambda m: any("engine started" in t for _, t in numbered(m)))
            assert any("engine started" in t for _, t in numbered(after))

    asyncio.run(scenario())


@pytest.mark.parametrize("runtime", ["process"], indirect=True)  # its open log files show the followers
def test_many_viewers_share_one_follower(portal, runtime):
    base, token, instance_id, process = portal
    log_path = str(runtime.root / instance_id / "engine.log")

    async def scenario():
        sockets = [
            await websockets.connect(ws_url(base, instance_id), additional_headers={"Authorization": f"Bearer {token}"})
            for _ in range(10)  # QM_LOGSTREAMS_PER_USER
        ]
        try:
            for ws in sockets:
                await collect(ws, lambda m: any(x["type"] == "status" for x in m))
            await asyncio.sleep(0.5)
            fds = Path(f"/proc/{process.pid}/fd")
            readers = [fd for fd in fds.iterdir() if os.path.realpath(fd) == log_path]
            assert len(readers) == 1
        finally:
            for ws in sockets:
                await ws.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("runtime", ["process"], indirect=True)  # lines are written straight to its log file
def test_a_viewer_that_never_reads_neither_slows_others_nor_stays(runtime, customer):
    """A stalled client is cut off by the server's ping timeout (its buffered output is bounded by it);
    meanwhile a normal viewer gets every line, in order and promptly."""
    import socket

    _, token = api_token_create(user=customer)
    with live_portal(daphne_args=("--ping-interval", "1", "--ping-timeout", "2")) as (base, _):
        instance_id = api(base, token, "POST", "/api/saas/instances/create", {"plan": "personal"})["instance_id"]
        port = int(base.rsplit(":", 1)[1])
        stalled = socket.create_connection(("127.0.0.1", port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(
            (
                f"GET /api/saas/instances/{instance_id}/logs/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        assert b"101" in stalled.recv(12)  # upgraded; from now on it reads nothing

        async def scenario():
            async with websockets.connect(
                ws_url(base, instance_id, "?lines=1"), additional_headers={"Authorization": f"Bearer {token}"}
            ) as ws:
                await collect(ws, lambda m: any(x["type"] == "status" for x in m))
                log = runtime.root / instance_id / "engine.log"
                with open(log, "a") as handle:
                    for n in range(3000):  # about 4 MB for the stalled client over the test
                        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.999Z", time.gmtime())  # now: followed by time
                        handle.write(f"{stamp} INFO filler n={n} {'x' * 1200}\n")
                        if n % 300 == 0:
                            handle.flush()
                            await asyncio.sleep(0.1)
                messages = await collect(ws, lambda m: sum(len(x.get("lines", [])) for x in m) >= 3000, seconds=30)
                lines = numbered(messages)
                fillers = [t for _, t in lines if " filler n=" in t]
                assert len(fillers) == 3000
                assert [s for s, _ in lines] == list(range(lines[0][0], lines[0][0] + len(lines)))

        asyncio.run(scenario())
        stalled.settimeout(15)
        received, closed = 0, False
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                chunk = stalled.recv(1 << 16)
            except ConnectionResetError:  # closed with unread data: the kernel answers with a reset
                chunk = b""
            if not chunk:
                closed = True
                break
            received += len(chunk)
        stalled.close()
        assert closed, "the server kept a client that never answers pings"


@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_console_session_with_our_origin(runtime, customer, password):
    from ..live_server import console_login

    _, token = api_token_create(user=customer)
    with live_portal() as (base, _):
        instance_id = api(base, token, "POST", "/api/saas/instances/create", {"plan": "personal"})["instance_id"]
        cookie = console_login(base, customer.email, password)
        port = base.rsplit(":", 1)[1]

        async def attempt(origin: str):
            headers = {"Cookie": cookie, "Origin": origin}
            async with websockets.connect(ws_url(base, instance_id), additional_headers=headers) as ws:
                try:
                    return json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                except ConnectionClosed as closed:
                    return closed.rcvd.code

        assert asyncio.run(attempt(f"http://127.0.0.1:{port}"))["type"] in ("logs", "status")
        assert asyncio.run(attempt("http://evil.example")) == 4401


def test_token_guessing_over_websockets_is_throttled_like_http(customer):
    """Unknown tokens on the log stream count towards the same per-address limit as on the API; a
    valid token from the same address still works."""
    from accounts.models import SecurityEvent

    _, token = api_token_create(user=customer)
    with live_portal(QM_TOKEN_GUESS_LIMIT="3") as (base, _):

        async def close_code(raw: str) -> int:
            url = ws_url(base, "qm-aaaaaa-1700000000")
            async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {raw}"}) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                return closed.value.rcvd.code

        assert [asyncio.run(close_code(f"qm_guess{n}")) for n in range(3)] == [4401, 4401, 4401]
        assert asyncio.run(close_code("qm_guess-more")) == 4429
        assert asyncio.run(close_code(token)) == 4404  # a valid token passes (no such instance: 4404)
        request = urllib.request.Request(base + "/api/auth/me", headers={"Authorization": "Bearer qm_guess-more"})
        with pytest.raises(urllib.error.HTTPError) as http:
            urllib.request.urlopen(request, timeout=10)
        assert http.value.code == 429
    events = SecurityEvent.objects.filter(kind="token_guessing")
    assert events.count() == 1 and events.get().ip_address == "127.0.0.1"
