"""Reconcile on a real runtime: crashed engines restart with back-off and a recorded reason,
crash loops end in failed, orphans go, drift is repaired, a stuck provision converges."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from instances.models import Instance, InstanceEvent
from instances.runtime.base import InstanceSpec
from instances.services.reconcile import reconcile_pass
from tests.capture import capture_instance_events
from tests.db import committing_db

from .conftest import kill_engine, running_rows

# serialized_rollback keeps the plan catalogue that the migrations loaded.
pytestmark = committing_db


def test_crashed_engine_is_restarted_and_the_reason_recorded(create_instance, runtime, settings):
    settings.QM_RESTART_BACKOFF_SECONDS = 0
    instance_id = create_instance()["instance_id"]
    kill_engine(runtime, instance_id)

    with capture_instance_events(expected=1) as published:
        report = reconcile_pass()
    assert report.crashed == 1
    assert (published[0].kind, published[0].from_status, published[0].to_status) == ("crashed", "running", "restarting")
    instance = Instance.objects.get(instance_id=instance_id)
    assert instance.status in ("restarting", "running")
    assert (
        instance.last_exit_code == 137 or "137" in instance.last_failure_reason or "-9" in instance.last_failure_reason
    )
    assert InstanceEvent.objects.filter(instance=instance, kind="crashed").exists()

    with capture_instance_events() as published:
        reconcile_pass()  # the back-off has passed: converge brings it back
    assert [event.kind for event in published] == ["running"]
    instance.refresh_from_db()
    assert instance.status == "running"
    assert instance.restart_count == 1
    assert runtime.status(instance_id).state.value == "running"


def test_crash_loop_ends_in_failed(create_instance, runtime, settings):
    settings.QM_RESTART_BACKOFF_SECONDS = 0
    settings.QM_CRASH_LOOP_RESTARTS = 2
    instance_id = create_instance()["instance_id"]
    for _ in range(3):
        kill_engine(runtime, instance_id)
        reconcile_pass()  # records the crash
        reconcile_pass()  # restarts (or, the third time, has declared the loop)
    instance = Instance.objects.get(instance_id=instance_id)
    assert instance.status == "failed"
    assert instance.last_failure_reason.startswith("crash loop")
    assert InstanceEvent.objects.filter(instance=instance, kind="crash_loop").count() == 1


def test_orphan_is_removed(runtime, db):
    runtime.create(
        InstanceSpec(
            instance_id="qm-orphan-1700000000",
            owner_id=999,
            image=runtime_image(runtime),
            cpu_limit=1.0,
            memory_limit_mb=512,
            pids_limit=128,
            files={},
            run_keys=b"proxy_secret: orphan\n",  # swarm keeps run keys as a Docker secret, never empty
        )
    )
    assert "qm-orphan-1700000000" in runtime.list_all()
    report = reconcile_pass()
    assert report.orphans_removed == 1
    assert "qm-orphan-1700000000" not in runtime.list_all()


def test_stopped_instance_started_behind_our_back_is_stopped_again(create_instance, customer_client, runtime):
    instance_id = create_instance()["instance_id"]
    customer_client.post(f"/api/saas/instances/{instance_id}/stop")
    runtime.start(instance_id)
    report = reconcile_pass()
    assert report.converges == 1
    assert runtime.status(instance_id).state.value != "running"
    assert Instance.objects.get(instance_id=instance_id).status == "stopped"


def test_stuck_provisioning_converges(create_instance, runtime, settings):
    """A worker that died mid-provision leaves the row provisioning and no engine: reconcile finishes the job."""
    instance_id = create_instance()["instance_id"]
    runtime.remove(instance_id, keep_data=True)
    Instance.objects.filter(instance_id=instance_id).update(
        status="provisioning", status_changed_at=timezone.now() - timedelta(hours=1)
    )
    reconcile_pass()
    assert Instance.objects.get(instance_id=instance_id).status == "running"
    assert runtime.status(instance_id).state.value == "running"


@pytest.mark.parametrize("count", [3, 30])
def test_queries_per_pass_do_not_grow_with_instances(count, customer, runtime, settings, monkeypatch):
    """Every row 'running' with no engine behind it: all crash in one pass, still a fixed number of
    queries; each crash's alert is left to a worker."""
    from alerts import tasks as alert_tasks

    settings.QM_RESTART_BACKOFF_SECONDS = 3600
    running_rows(customer, count, prefix="q")
    queued = []
    monkeypatch.setattr(alert_tasks.instance_events_alert, "delay", queued.append)
    with CaptureQueriesContext(connection) as queries:
        report = reconcile_pass()
    assert report.crashed == count
    assert len(queries) <= 6, [q["sql"][:80] for q in queries]
    assert len(queued) == 1 and len(queued[0]) == count  # one task for the pass's alerts


def runtime_image(runtime) -> str:
    from django.conf import settings

    return settings.QM_ENGINE_IMAGE


@pytest.mark.parametrize("runtime", ["docker"], indirect=True)
def test_crash_restarted_by_dockers_policy_is_recorded(create_instance, runtime, settings):
    """The engine dies inside its container; Docker's on-failure policy restarts it; reconcile notices."""
    import os
    import signal
    import time
    from pathlib import Path

    instance_id = create_instance()["instance_id"]
    Instance.objects.filter(instance_id=instance_id).update(started_at=timezone.now() - timedelta(minutes=10))
    container = runtime.client.containers.get(runtime.container_name(instance_id))
    init_pid = container.attrs["State"]["Pid"]
    engine_pid = int(Path(f"/proc/{init_pid}/task/{init_pid}/children").read_text().split()[0])
    os.kill(engine_pid, signal.SIGKILL)  # a crash, not a `docker kill`: the restart policy applies
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        container.reload()
        if container.attrs["RestartCount"] >= 1 and container.status == "running":
            break
        time.sleep(0.1)
    assert container.attrs["RestartCount"] >= 1
    report = reconcile_pass()
    assert report.crashed == 1
    instance = Instance.objects.get(instance_id=instance_id)
    assert instance.status == "running" and instance.restart_count == 1
    assert "runtime restarted it" in instance.last_failure_reason
    assert reconcile_pass().crashed == 0  # recorded once


@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_engine_that_stops_trading_is_marked_unhealthy(create_instance, runtime):
    instance_id = create_instance()["instance_id"]
    assert Instance.objects.get(instance_id=instance_id).healthy is True
    (runtime.root / instance_id / "data" / "config.yaml").write_text("grid: {max_layers: 0}\n")
    runtime.restart(instance_id)  # the engine comes back in its error state: alive, not trading
    import time

    deadline = time.monotonic() + 10
    while runtime.list_all()[instance_id].healthy is not False and time.monotonic() < deadline:
        time.sleep(0.1)
    report = reconcile_pass()
    assert report.unhealthy == 1
    instance = Instance.objects.get(instance_id=instance_id)
    assert instance.status == "running" and instance.healthy is False
    assert InstanceEvent.objects.filter(instance=instance, kind="unhealthy").exists()
