"""`wait=1` on a real daphne with real Redis: a burst of waiting calls holds no database connection
(reads keep being served with a pool of two), and the waiters wake on the status change another
process publishes through the channel layer."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.conf import settings

from accounts.services import api_token_create
from instances import services
from instances.models import Instance
from tests.db import committing_db

from ..conftest import require_service
from ..live_server import live_portal

pytestmark = committing_db

WAITING_CREATES = 6
POOL_SIZE = 2
POOL_TIMEOUT = 10  # a request waits this long for a connection (the creates' own work queues for it)


def call(base: str, token: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict, dict, float]:
    """(status, body, headers, seconds) of one API call; errors are answers too."""
    request = urllib.request.Request(
        base + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=90) as response:
            return response.status, json.loads(response.read()), dict(response.headers), time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), dict(error.headers), time.monotonic() - started


def portal_without_worker(**extra):
    """A portal whose queued converges nobody runs (an in-memory broker): calls wait until the test
    converges the instance itself, in this process, as a Celery worker would in its own."""
    require_service(bool(settings.REDIS_URL), "no Redis (REDIS_URL) for the channel layer")
    return live_portal(
        DJANGO_SETTINGS_MODULE="quantmesh.settings.base",
        CELERY_TASK_ALWAYS_EAGER="0",
        CELERY_BROKER_URL="memory://",
        DATABASE_POOL_SIZE=str(POOL_SIZE),
        DATABASE_POOL_TIMEOUT=str(POOL_TIMEOUT),
        **extra,
    )


def wait_for(condition, seconds: float = 60, why=None):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out; {why}"
        time.sleep(0.1)


@pytest.fixture
def token(user, subscribe):
    subscribe(user, "enterprise")  # no instance limit
    return api_token_create(user=user)[1]


@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_a_burst_of_waiting_creates_neither_blocks_reads_nor_misses_the_change(runtime, token):
    # The periodic re-read is pushed far out: the answers below can only come from the wake-up.
    with portal_without_worker(QM_WAIT_RECHECK_SECONDS="60") as (base, _):
        answers: dict[int, tuple] = {}

        def create(n: int) -> None:
            answers[n] = call(base, token, "POST", "/api/saas/instances/create", {"plan": "personal"})

        creates = [threading.Thread(target=create, args=(n,)) for n in range(WAITING_CREATES)]
        for thread in creates:
            thread.start()
        wait_for(lambda: Instance.objects.count() == WAITING_CREATES, why=answers)
        time.sleep(0.5)  # every create is now in its wait

        reads = [call(base, token, "GET", path) for path in ["/api/saas/instances", "/api/auth/me"] * 4]
        assert [status for status, *_ in reads] == [200] * len(reads), reads
        assert max(seconds for *_, seconds in reads) < POOL_TIMEOUT / 2  # none waited for a held connection
        assert len(reads[0][1]) == WAITING_CREATES
        assert not answers, "a create answered before its instance ran"

        # Converged here, published on commit through Redis: each waiting create answers promptly.
        for instance in Instance.objects.all():
            services.instance_converge(instance_id=instance.instance_id)
        converged_at = time.monotonic()
        for thread in creates:
            thread.join(timeout=20)
        assert time.monotonic() - converged_at < 10
        assert sorted(status for status, *_ in answers.values()) == [201] * WAITING_CREATES
        for _, body, headers, _ in answers.values():
            assert body["status"] == "running" and body["healthy"] is True
            assert headers["Content-Type"] == "application/json"
            detail = call(base, token, "GET", f"/api/saas/instances/{body['instance_id']}")[1]
            assert body == detail  # the same answer as without a wait

        # A lifecycle call waits the same way.
        instance_id = answers[0][1]["instance_id"]
        stopping: list[tuple] = []
        stop = threading.Thread(
            target=lambda: stopping.append(call(base, token, "POST", f"/api/saas/instances/{instance_id}/stop"))
        )
        stop.start()
        wait_for(lambda: Instance.objects.get(instance_id=instance_id).desired_state == "stopped")
        time.sleep(0.3)
        assert not stopping
        services.instance_converge(instance_id=instance_id)
        stop.join(timeout=20)
        status, body, _, _ = stopping[0]
        assert status == 200 and body["status"] == "stopped"


def test_the_wait_is_bounded(token):
    with portal_without_worker(QM_CREATE_WAIT_SECONDS="1.5") as (base, _):
        status, body, _, seconds = call(base, token, "POST", "/api/saas/instances/create", {"plan": "personal"})
    assert status == 201 and body["status"] == "provisioning"
    assert 1.5 <= seconds < 6
