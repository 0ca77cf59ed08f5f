"""What every part of the engine's HTTP side shares: the engine's key in the app, times and errors."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from ..app import Engine

ENGINE_KEY = web.AppKey("engine", Engine)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_response(status: int, code: str, message: str, **details) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return web.json_response(body, status=status)
