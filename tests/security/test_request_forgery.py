"""Request forgery through the built-in instance router (the `make run` path), on a real daphne:
a request target that is not an origin-form path must never choose the upstream host."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from accounts.services import api_token_create
from instances.models import Instance
from tests.db import committing_db

from ..live_server import live_portal

pytestmark = committing_db


class Recorder(BaseHTTPRequestHandler):
    """An internal service the attacker wants the portal to call."""

    seen: list[tuple[str, dict]] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        Recorder.seen.append((self.path, dict(self.headers)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"internal-service-answer")

    def log_message(self, *args):
        pass


@pytest.fixture
def internal_service():
    Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def raw_request(base: str, request_line: str, headers: dict[str, str]) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    text = request_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "Connection: close\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(text.encode("latin-1"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_router_never_lets_the_request_target_pick_the_upstream(runtime, create_instance, customer, internal_service):
    instance = Instance.objects.get(instance_id=create_instance("personal")["instance_id"])
    _, token = api_token_create(user=customer)
    headers = {"Host": f"instance-{instance.slug}.localhost", "Authorization": f"Bearer {token}"}
    attacks = [
        f"GET @127.0.0.1:{internal_service}/x HTTP/1.1",  # userinfo: http://engine:port@127.0.0.1:N/x
        f"GET http://127.0.0.1:{internal_service}/x HTTP/1.1",  # absolute-form
        f"GET //127.0.0.1:{internal_service}/x HTTP/1.1",  # scheme-relative
        f"GET 127.0.0.1:{internal_service} HTTP/1.1",  # authority-form
        f"GET .@127.0.0.1:{internal_service}/x HTTP/1.1",
    ]
    with live_portal() as (base, _):
        for line in attacks:
            answer = raw_request(base, line, headers)
            assert b"internal-service-answer" not in answer, line
            status = answer.split(b"\r\n", 1)[0]
            assert b" 200 " not in status, (line, status)
        # The owner's ordinary requests still reach the engine.
        answer = raw_request(base, "GET /api/status HTTP/1.1", headers)
        assert answer.startswith(b"HTTP/1.1 200") and instance.instance_id.encode() in answer
    assert Recorder.seen == [], Recorder.seen


def test_upstream_url_is_built_from_parts():
    from instances.proxy import upstream_url

    url = upstream_url("127.0.0.1", 18080, {"raw_path": b"/a%2Fb/@x:1", "query_string": b"q=1&r=@h:2"})
    assert (url.host, url.port, url.raw_path, url.raw_query_string) == ("127.0.0.1", 18080, "/a%2Fb/@x:1", "q=1&r=@h:2")
    for target in [b"@127.0.0.1:1/x", b"http://127.0.0.1:1/x", b"127.0.0.1:1", b"*", b"", b"/a b", b"/a\r\nX: y"]:
        assert upstream_url("127.0.0.1", 18080, {"raw_path": target, "query_string": b""}) is None, target
