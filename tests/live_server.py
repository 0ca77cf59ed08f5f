"""A real portal for tests that need one: daphne in its own process on the test database."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from contextlib import contextmanager
from urllib.parse import quote, urlparse

from django.conf import settings
from django.db import connection


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


@contextmanager
def live_portal(daphne_args: tuple[str, ...] = (), **extra_env: str):
    """Yield (base_url, process) of daphne serving quantmesh.asgi on the test database."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "quantmesh.settings.test",
        "DATABASE_URL": test_database_url(),
        "QM_RUNTIME_BACKEND": settings.QM_RUNTIME_BACKEND,
        "QM_PROCESS_ROOT": str(settings.QM_PROCESS_ROOT),
        "QM_ENGINE_IMAGE": settings.QM_ENGINE_IMAGE,
        "QM_RUNTIME_SCOPE": settings.QM_RUNTIME_SCOPE,
        "QM_PROVISION_TIMEOUT_SECONDS": str(settings.QM_PROVISION_TIMEOUT_SECONDS),
        # SIGABRT then prints every thread's stack (see _stop).
        "PYTHONFAULTHANDLER": "1",
        **extra_env,
    }
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _stop)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            *daphne_args,
            "quantmesh.asgi:application",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("daphne did not come up") from None
                time.sleep(0.1)
        yield base, process
    finally:
        _stop(process, log)


def _stop(process: subprocess.Popen, log, grace: float = 30) -> None:
    """SIGTERM, as a deployment stops the portal. Daphne waits for requests still running in a thread
    (an engine scrape waits up to its timeout); past `grace` the process's thread stacks go into a
    warning, which says what held it, and it is killed so that the next test starts clean."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.seek(0)
        tail = log.read()[-8000:].decode(errors="replace")
        warnings.warn(f"daphne did not stop within {grace} s of SIGTERM; its stacks:\n{tail}", stacklevel=2)
    finally:
        log.close()


def http_request(base: str, host: str, path: str, headers: dict | None = None, method: str = "GET", body=None):
    address = urlparse(base)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    connection.request(method, path, body=body, headers={"Host": host, **(headers or {})})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response, data


def console_login(base: str, email: str, password: str) -> str:
    """Log in through the live portal's login form; returns the Cookie header of the session."""
    page, body = http_request(base, "localhost", "/accounts/login/")
    csrf_cookie = next(v.split(";")[0] for k, v in page.getheaders() if k == "Set-Cookie" and "csrftoken" in v)
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    form = f"login={quote(email)}&password={quote(password)}&csrfmiddlewaretoken={token}"
    response, _ = http_request(
        base,
        "localhost",
        "/accounts/login/",
        {
            "Cookie": csrf_cookie,
            "Content-Type": "application/x-www-form-urlencoded",
            "Referer": f"{base}/",
        },
        method="POST",
        body=form,
    )
    assert response.status == 302, response.status
    session = next(v.split(";")[0] for k, v in response.getheaders() if k == "Set-Cookie" and "sessionid" in v)
    return f"{csrf_cookie}; {session}"
