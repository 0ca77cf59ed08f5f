"""A dependency that is down (PostgreSQL restarting, Redis or the Docker engine unreachable) is not
a bug: requests get 503 with Retry-After at once, in the API's error shape or as a short page, and
the next request after it is back succeeds (connections open with timeouts, and a kept or pooled one
is checked before use: CONN_HEALTH_CHECKS)."""

from __future__ import annotations

import sys

import redis.exceptions
import requests.exceptions
from django.core.cache import cache
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpResponse, JsonResponse

from quantmesh.errors import error_body

# The Docker SDK (and any HTTP dependency) reports an unreachable server as requests' ConnectionError.
OUTAGE_ERRORS = (
    OperationalError,
    InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    requests.exceptions.ConnectionError,
)
RETRY_AFTER_SECONDS = 5
MESSAGE = "The service is briefly unavailable; please retry in a few seconds."
PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>QuantMesh Cloud: briefly unavailable</title>"
    "<h1>Briefly unavailable</h1><p>Please retry in a few seconds. Your instances keep running.</p></html>"
)


def is_outage(exc: BaseException | None) -> bool:
    return isinstance(exc, OUTAGE_ERRORS)


def outage_response(request) -> HttpResponse:
    """Rendered without the database, the cache or templates' context processors."""
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("service_unavailable", MESSAGE), status=503, headers=headers)
    return HttpResponse(PAGE, status=503, headers=headers)


def dependency_unreachable() -> bool:
    """Whether PostgreSQL or Redis does not answer right now (a quick probe)."""
    try:
        connection.close_if_unusable_or_obsolete()
        connection.ensure_connection()
        cache.get("qm:outage-probe")
    except OUTAGE_ERRORS:
        return True
    return False


def server_error_or_outage(handler):
    """Wrap Django's 500 handler: a failure while a dependency is down is an outage (503), not a bug.
    Under ASGI the handler runs in another thread than the failure, without the exception at hand,
    so the dependencies are probed."""

    def handle(request, *args, **kwargs):
        if is_outage(sys.exc_info()[1]) or dependency_unreachable():
            return outage_response(request)
        return handler(request, *args, **kwargs)

    return handle
