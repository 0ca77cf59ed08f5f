"""POST /api/auth/login and an authenticated GET /api/auth/me through daphne, 50 concurrent clients,
beside a bare Django view (/healthz) on the same server as the floor."""

from __future__ import annotations

import json

from bench.common import Result
from bench.load import run_load
from bench.portal_server import manage_shell, running_portal

CONCURRENCY = 50
SECONDS = 10
PASSWORD = "bench-password-123456"


def run() -> list[Result]:
    with running_portal() as (base, env):
        token = manage_shell(
            env,
            "from tests.factories import UserFactory\n"
            "from accounts.services import api_token_create\n"
            f"u = UserFactory(email='bench@example.com', password='{PASSWORD}')\n"
            "print(api_token_create(user=u)[1])",
        ).strip()
        headers = {"Authorization": f"Bearer {token}"}
        login_body = json.dumps({"email": "bench@example.com", "password": PASSWORD})

        floor = run_load(lambda s: s.get(f"{base}/healthz"), concurrency=CONCURRENCY, seconds=SECONDS)
        me = run_load(lambda s: s.get(f"{base}/api/auth/me", headers=headers), concurrency=CONCURRENCY, seconds=SECONDS)
        login = run_load(
            lambda s: s.post(f"{base}/api/auth/login", data=login_body, headers={"Content-Type": "application/json"}),
            concurrency=CONCURRENCY,
            seconds=SECONDS,
        )
    results = []
    for name, load in (("bare view /healthz", floor), ("GET /api/auth/me", me), ("POST /api/auth/login", login)):
        results += [
            Result(f"{name} req/s (c={CONCURRENCY})", load.rps, "req/s"),
            Result(f"{name} p99", load.p99, "ms"),
            Result(f"{name} errors", load.errors, "count", "0"),
        ]
    results.append(Result("GET /api/auth/me vs bare view, req/s ratio", me.rps / floor.rps, "ratio"))
    return results
