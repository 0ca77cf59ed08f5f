"""A real portal for benchmarks: a fresh database (a copy of the migrated template: quantmesh/dbtemplate.py),
served on a loopback port by its web server (quantmesh/server.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_portal(extra_env: dict[str, str] | None = None):
    """Yield (base_url, env) of a portal on its own SQLite database
    (or on DATABASE_URL when the caller set one, e.g. PostgreSQL)."""
    workdir = tempfile.mkdtemp(prefix="qm-bench-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "quantmesh.settings.base",
        "DEBUG": "0",
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{workdir}/bench.sqlite3"),
        "QM_LOGIN_IP_LIMIT": "100000000",
        "QM_LOGIN_ACCOUNT_FAILURES": "100000000",
        # One customer's token at c=50 passes the per-user API rate (600/min) within a second: the
        # throttle still runs on every request, it just never refuses, so the request path is measured.
        "QM_API_USER_RATE": "100000000/minute",
        "LOG_LEVEL": "WARNING",
        # No Celery worker runs beside this portal unless a benchmark starts one (and says so): tasks
        # run in process as on `make run`'s embedded default, also when REDIS_URL is set in the shell
        # (which otherwise sends them to a broker nobody reads, and creates never start).
        "CELERY_TASK_ALWAYS_EAGER": "1",
        **(extra_env or {}),
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate_from_template", "-v0"], env=env, cwd=ROOT, check=True)
    port = free_port()
    server = subprocess.Popen(  # the portal's own web server, as `make run` and the stack start it
        [*manage, "serve_web", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(Path(workdir) / "portal.log", "wb"),  # noqa: SIM115 (the server's own; read after a failure)
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # several processes importing Django on a busy machine
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).read()  # noqa: S310 (loopback)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the portal did not come up") from None
                time.sleep(0.2)
        yield base, env
    finally:
        server.terminate()
        server.wait(timeout=30)  # gunicorn allows its workers 10 s (--graceful-timeout), then kills them


def manage_shell(env: dict[str, str], code: str) -> str:
    """Run Python with Django set up against the benchmark's database; returns its stdout."""
    prelude = "import django; django.setup()\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude + code], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    )
    return result.stdout


# Run with manage_shell: a customer on the enterprise plan (no instance limit); prints a bearer token.
ENTERPRISE_CUSTOMER = (
    "from tests.factories import UserFactory\n"
    "from accounts.services import api_token_create\n"
    "from billing.services import subscription_grant_local\n"
    "from billing.selectors import plan_get\n"
    "u = UserFactory()\n"
    "subscription_grant_local(user=u, plan=plan_get(code='enterprise'))\n"
    "print(api_token_create(user=u)[1])"
)
