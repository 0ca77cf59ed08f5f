"""The Docker Engine API calls the docker SDK has no method for, made through its public client.

The SDK's `update_container` knows no NanoCpus (and its CPU quota/period conflict with it), and
`Service.update` rebuilds a service's spec from keyword arguments, losing what it does not know;
both backends need the raw endpoints. Only the SDK's public surface is used (the client is a
`requests.Session` with `base_url`, `api_version` and `timeout`), so an SDK upgrade that renames
its private helpers does not break the backends.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import requests
from docker.errors import create_api_error_from_http_exception


def _post_json(client, path: str, body: dict, params: dict | None = None) -> None:
    """POST a JSON body to the engine's API (at the client's negotiated version); APIError on refusal,
    as the SDK's own calls raise it."""
    api = client.api
    response = api.post(
        f"{api.base_url}/v{api.api_version}{path}",
        params=params,
        data=json.dumps({key: value for key, value in body.items() if value is not None}),
        headers={"Content-Type": "application/json"},
        timeout=api.timeout,
    )
    try:
        response.raise_for_status()
    except requests.exceptions.HTTPError as error:
        raise create_api_error_from_http_exception(error) from error


def container_update(client, container_id: str, resources: dict) -> None:
    """`POST /containers/{id}/update`: change a container's resources (e.g. NanoCpus, Memory) in place."""
    _post_json(client, f"/containers/{quote(container_id, safe='')}/update", resources)


def service_update(client, service_id: str, version: int, spec: dict) -> None:
    """`POST /services/{id}/update`: replace a service's whole spec (at the version it was read at)."""
    _post_json(client, f"/services/{quote(service_id, safe='')}/update", spec, params={"version": version})
