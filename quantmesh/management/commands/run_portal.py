"""Serve the portal: the web server (quantmesh/server.py: gunicorn with QM_WEB_WORKERS uvicorn
processes), plus a Celery worker and beat when a broker is configured.

Without a broker (the embedded default) Celery tasks run inside the web process and `run_periodic`
stands in for beat. Ctrl-C (or SIGTERM) stops every child.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from quantmesh.security import EmbeddedKeyLoopbackOnly, embedded_key_in_use, is_loopback
from quantmesh.server import WorkersNeedRedis, gunicorn_argv, web_workers


class Command(BaseCommand):
    help = (
        "Run the portal (web processes; Celery worker + beat with REDIS_URL, else run_periodic) until interrupted."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host, port, **options):
        if embedded_key_in_use() and not is_loopback(host):
            raise CommandError(f"Refusing to listen on {host}: {EmbeddedKeyLoopbackOnly.MESSAGE}")
        try:
            workers = web_workers()
        except WorkersNeedRedis as exc:
            raise CommandError(str(exc)) from None
        commands = {"web": gunicorn_argv(host=host, port=port, workers=workers)}
        if settings.CELERY_TASK_ALWAYS_EAGER:
            commands["periodic"] = [sys.executable, "manage.py", "run_periodic"]
        else:
            celery = [sys.executable, "-m", "celery", "-A", "quantmesh"]
            schedule = str(settings.VAR_DIR / "celerybeat")
            commands["worker"] = [*celery, "worker", "--loglevel", "INFO", "--concurrency", "2"]
            commands["beat"] = [*celery, "beat", "--loglevel", "INFO", "--schedule", schedule]
        children = {name: subprocess.Popen(argv) for name, argv in commands.items()}
        self.stdout.write(
            f"QuantMesh Cloud on http://{host}:{port}/ ({workers} web process(es), {', '.join(children)}); "
            "Ctrl-C stops it."
        )

        def stop(*_):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            while True:
                for name, child in children.items():
                    if child.poll() is not None:
                        raise SystemExit(f"{name} exited with code {child.returncode}")
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.terminate()
            for child in children.values():
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
