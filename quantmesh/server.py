"""The portal's web server: gunicorn supervising QM_WEB_WORKERS uvicorn worker processes, each serving
the whole ASGI application (HTTP, websockets, instance hosts) on one shared listening socket.

Why this pair: gunicorn keeps several processes on one port (the kernel spreads the connections),
replaces a worker that dies and stops them all gracefully; uvicorn's HTTP parser (httptools) and
event loop (uvloop) cost a fraction of daphne's per request, and it speaks websockets at the same
URLs, so neither a second server nor a proxy in front is needed. Live logs and instance events reach
a viewer on whichever process holds its websocket through the channel layer and the log hub in
Redis: without REDIS_URL (the embedded default's in-memory layer) there is one process.
"""

from __future__ import annotations

import os
import sys

from django.conf import settings
from uvicorn_worker import UvicornWorker

APPLICATION = "quantmesh.asgi:application"


class PortalWorker(UvicornWorker):
    CONFIG_KWARGS = {
        "loop": "auto",
        "http": "auto",
        "lifespan": "off",  # Django has no lifespan handler
        # The client address is the socket's: X-Forwarded-For is trusted only as QM_TRUST_X_FORWARDED_FOR
        # says (accounts/requests.py), as under daphne.
        "proxy_headers": False,
        "server_header": False,
        "access_log": False,  # a log line per request costs more than a bare view; Traefik keeps access logs
    }


class WorkersNeedRedis(ValueError):
    MESSAGE = (
        "QM_WEB_WORKERS above 1 needs REDIS_URL: live logs and instance events cross processes through Redis "
        "(the embedded default's in-memory channel layer lives inside one process)."
    )


def web_workers() -> int:
    """QM_WEB_WORKERS, or by default one process per CPU with Redis and one without."""
    shared = bool(settings.REDIS_URL)
    workers = settings.QM_WEB_WORKERS or ((os.cpu_count() or 1) if shared else 1)
    if workers > 1 and not shared:
        raise WorkersNeedRedis(WorkersNeedRedis.MESSAGE)
    return workers


def gunicorn_argv(*, host: str, port: int, workers: int) -> list[str]:
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return [
        sys.executable, "-m", "gunicorn", APPLICATION,
        "--worker-class", "quantmesh.server.PortalWorker",
        "--workers", str(workers),
        "--bind", bind,
        "--graceful-timeout", "10",
        "--log-level", "warning",
    ]  # fmt: skip
