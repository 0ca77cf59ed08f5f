"""Readiness probes of the portal's dependencies: each answers "ok" or names what went wrong (the
exception's type only: messages can carry addresses or credentials)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import connection

from quantmesh.celery import app

PROBE_TIMEOUT_SECONDS = 2


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    if settings.REDIS_URL:
        cache.get("qm:readiness-probe")


def _broker() -> None:
    options = {"socket_connect_timeout": PROBE_TIMEOUT_SECONDS, "socket_timeout": PROBE_TIMEOUT_SECONDS}
    with app.connection_for_write(transport_options=options) as broker:
        broker.ensure_connection(max_retries=0, timeout=PROBE_TIMEOUT_SECONDS)


PROBES: dict[str, Callable[[], None]] = {"database": _database, "redis": _redis, "broker": _broker}


def readiness_checks() -> dict[str, str]:
    results = {}
    for name, probe in PROBES.items():
        try:
            probe()
        except Exception as error:  # noqa: BLE001 (any failure means not ready; the type says which)
            results[name] = f"unreachable: {type(error).__name__}"
        else:
            results[name] = "ok"
    return results
