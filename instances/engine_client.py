"""The portal's calls to an instance's engine over HTTP, carrying its proxy secret."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from quantmesh.crypto import decrypt
from quantmesh.logs import REQUEST_ID_HEADER, request_id

from .models import Instance
from .runtime.base import BackendError

PROXY_SECRET_HEADER = "X-QuantMesh-Proxy-Secret"  # noqa: S105 (a header name)


@dataclass(frozen=True)
class EngineReply:
    status: int
    body: bytes
    content_type: str = "application/octet-stream"

    def json(self):
        return json.loads(self.body)


def engine_request(
    instance: Instance, path: str, *, backend, timeout: float = 2.0, method: str = "GET", json_body=None
) -> EngineReply | None:
    """`method` `path` on the instance's engine (with `json_body` as its JSON body); None when it does
    not answer at all (also while its runtime unit is missing, e.g. being replaced by a restart)."""
    try:
        host, port = backend.endpoint(instance.instance_id)
    except BackendError:
        return None
    headers = {PROXY_SECRET_HEADER: decrypt(instance.proxy_secret_encrypted)}
    if current := request_id.get():  # the user's action this call is part of
        headers[REQUEST_ID_HEADER] = current
    data = None
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(  # noqa: S310 (the engine's own loopback/internal address)
        f"http://{host}:{port}{path}", headers=headers, data=data, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return EngineReply(response.status, response.read(), response.headers.get_content_type())
    except urllib.error.HTTPError as error:
        return EngineReply(error.code, error.read(), error.headers.get_content_type())
    except (OSError, ValueError):
        return None


def probe(instance: Instance, *, backend) -> bool | None:
    """The engine's health: True/False when it answers /healthz, None when it does not answer."""
    reply = engine_request(instance, "/healthz", backend=backend, timeout=1.0)
    if reply is None:
        return None
    return reply.status == 200
