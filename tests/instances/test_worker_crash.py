"""A Celery worker killed in the middle of provisioning: the instance still converges, with one engine.

Runs a real worker process on the Redis broker against the test database (PostgreSQL), so it
needs both services; with QM_REQUIRE_SERVICES=1 their absence fails the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from instances.models import Instance
from instances.services.reconcile import reconcile_pass
from quantmesh.celery import app as celery_app
from tests.db import committing_db

from ..conftest import require_service

pytestmark = committing_db
ROOT = settings.BASE_DIR


@pytest.fixture
def worker_env(runtime, settings):
    require_service(
        bool(settings.REDIS_URL) and connection.vendor == "postgresql",
        "a real worker needs REDIS_URL and PostgreSQL (the test database is shared with it)",
    )
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "quantmesh.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "QM_RUNTIME_BACKEND": runtime.name,
        "QM_RUNTIME_SCOPE": settings.QM_RUNTIME_SCOPE,  # the worker's containers are this test's
        "QM_PROCESS_ROOT": str(settings.QM_PROCESS_ROOT),
        "QM_PROVISION_TIMEOUT_SECONDS": "30",
    }
    celery_app.conf.task_always_eager = False
    yield env
    celery_app.conf.task_always_eager = True


def start_worker(env) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "quantmesh",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_until(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_worker_killed_mid_provision_converges(worker_env, runtime, customer_client):
    worker = start_worker(worker_env)
    try:
        body = customer_client.post("/api/saas/instances/create?wait=0", {"plan": "personal"}, format="json").json()
        instance_id = body["instance_id"]
        assert body["status"] == "provisioning"
        # Kill the worker as soon as the runtime unit exists: the task is half done.
        assert wait_until(lambda: runtime.status(instance_id).state.value != "missing", 30)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    assert Instance.objects.get(instance_id=instance_id).status == "provisioning"

    # Later, reconcile notices the stale provisioning and a new worker finishes the job.
    Instance.objects.filter(instance_id=instance_id).update(status_changed_at=timezone.now() - timedelta(hours=1))
    worker = start_worker(worker_env)
    try:
        report = reconcile_pass()
        assert instance_id in report.converge_ids
        assert wait_until(lambda: Instance.objects.get(instance_id=instance_id).status == "running", 60)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=20)
    assert list(runtime.list_all()) == [instance_id]  # one engine, never two
    assert runtime.status(instance_id).state.value == "running"
