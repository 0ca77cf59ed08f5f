"""The web server alone (the production stack's portal container): gunicorn with QM_WEB_WORKERS uvicorn
processes (quantmesh/server.py), exec'd in place of this command so that it receives the signals."""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand, CommandError

from quantmesh.server import WorkersNeedRedis, gunicorn_argv, web_workers


class Command(BaseCommand):
    help = "Serve HTTP and websockets with gunicorn + uvicorn workers (QM_WEB_WORKERS processes)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host, port, **options):
        try:
            argv = gunicorn_argv(host=host, port=port, workers=web_workers())
        except WorkersNeedRedis as exc:
            raise CommandError(str(exc)) from None
        os.execv(argv[0], argv)  # noqa: S606 (our own interpreter, fixed arguments)
