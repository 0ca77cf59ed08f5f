"""Instances through the API on a real daphne portal:
- create → running (the POST answers once the engine is up), p50/p95 over 20 creates, per backend;
- GET /api/saas/instances for a user with 50 instances, 50 concurrent clients, beside /healthz."""

from __future__ import annotations

import json
import os
import time
import urllib.request

from bench.common import Result, percentile
from bench.load import run_load
from bench.portal_server import ENTERPRISE_CUSTOMER, manage_shell, running_portal
from instances.runtime.docker import docker_available

CREATES = 20
CONCURRENCY = 50
SECONDS = 10


def _call(method: str, url: str, token: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 (loopback)
        url, data=data, method=method, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
        return json.loads(response.read())


def _create_to_running(backend: str) -> list[Result]:
    with running_portal({"QM_RUNTIME_BACKEND": backend}) as (base, env):
        token = manage_shell(env, ENTERPRISE_CUSTOMER).strip()
        durations, ids = [], []
        for _ in range(CREATES):
            started = time.perf_counter()
            body = _call("POST", f"{base}/api/saas/instances/create", token, {"plan": "personal"})
            durations.append(time.perf_counter() - started)
            if body["status"] != "running":
                raise RuntimeError(f"create ended {body['status']}: {body.get('last_failure_reason')}")
            ids.append(body["instance_id"])
        for instance_id in ids:
            _call("DELETE", f"{base}/api/saas/instances/{instance_id}", token)
    target = "<= 1 s" if backend == "process" else "<= 2 s"
    return [
        Result(f"create→running p50 ({backend})", percentile(durations, 50), "s", target),
        Result(f"create→running p95 ({backend})", percentile(durations, 95), "s"),
    ]


def _list_under_load() -> list[Result]:
    with running_portal() as (base, env):
        token = manage_shell(
            env,
            ENTERPRISE_CUSTOMER.replace(
                "print(api_token_create(user=u)[1])",
                "from instances.models import Instance\n"
                "Instance.objects.bulk_create([Instance(instance_id=f'qm-b{n:05d}-1700000000', slug=f'b{n:05d}',"
                " owner=u, plan=plan_get(code='personal'), status='running', image='bench',"
                " proxy_secret_encrypted='x') for n in range(50)])\n"
                "print(api_token_create(user=u)[1])",
            ),
        ).strip()
        headers = {"Authorization": f"Bearer {token}"}
        floor = run_load(lambda s: s.get(f"{base}/healthz"), concurrency=CONCURRENCY, seconds=SECONDS)
        listing = run_load(
            lambda s: s.get(f"{base}/api/saas/instances", headers=headers), concurrency=CONCURRENCY, seconds=SECONDS
        )
    return [
        Result("bare view /healthz req/s (c=50)", floor.rps, "req/s"),
        Result("GET /api/saas/instances (50 instances) req/s", listing.rps, "req/s"),
        Result("GET /api/saas/instances p99", listing.p99, "ms"),
        Result("GET /api/saas/instances errors", listing.errors, "count", "0"),
        Result("instance list vs bare view, req/s ratio", listing.rps / floor.rps, "ratio"),
    ]


def run() -> list[Result]:
    results = _create_to_running("process")
    if os.environ.get("BENCH_DOCKER", "1") == "1" and docker_available():
        results += _create_to_running("docker")
    return results + _list_under_load()
