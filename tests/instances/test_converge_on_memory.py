"""Converge and reconcile on the memory backend: the portal's own logic (desired state, crashes,
back-off, crash loops, orphans, health, plan changes) in milliseconds. The same scenarios run end to
end on the real backends in test_api.py and test_reconcile.py; the memory backend keeps the same
runtime contract (runtime/test_contract.py), so a pass here means what it says there."""

from __future__ import annotations

import pytest
import yaml

from billing.selectors import plan_get
from instances.models import Instance, InstanceEvent
from instances.runtime.base import RuntimeState
from instances.services import instance_apply_limits, instance_change_plan
from instances.services.reconcile import reconcile_pass
from tests.db import committing_db

from . import test_api, test_reconcile

pytestmark = [committing_db, pytest.mark.parametrize("runtime", ["memory"], indirect=True)]


def test_lifecycle_stop_start_restart_delete(create_instance, customer_client, runtime):
    test_api.test_lifecycle_stop_start_restart_delete(create_instance, customer_client, runtime)


def test_crashed_engine_is_restarted_and_the_reason_recorded(create_instance, runtime, settings):
    test_reconcile.test_crashed_engine_is_restarted_and_the_reason_recorded(create_instance, runtime, settings)


def test_crash_loop_ends_in_failed(create_instance, runtime, settings):
    test_reconcile.test_crash_loop_ends_in_failed(create_instance, runtime, settings)


def test_orphan_is_removed(runtime):
    test_reconcile.test_orphan_is_removed(runtime, None)


def test_stopped_instance_started_behind_our_back_is_stopped_again(create_instance, customer_client, runtime):
    test_reconcile.test_stopped_instance_started_behind_our_back_is_stopped_again(
        create_instance, customer_client, runtime
    )


def test_stuck_provisioning_converges(create_instance, runtime, settings):
    test_reconcile.test_stuck_provisioning_converges(create_instance, runtime, settings)


def test_an_oom_kill_is_named_as_the_reason(create_instance, runtime, settings):
    settings.QM_RESTART_BACKOFF_SECONDS = 3600
    instance_id = create_instance()["instance_id"]
    runtime.crash(instance_id, exit_code=137, oom_killed=True)
    assert reconcile_pass().crashed == 1
    instance = Instance.objects.get(instance_id=instance_id)
    assert instance.status == "restarting" and instance.last_exit_code == 137
    assert instance.last_failure_reason.startswith("OOM-killed")
    assert runtime.status(instance_id).state == RuntimeState.EXITED  # the back-off has not passed


def test_an_engine_turning_unhealthy_is_recorded_once(create_instance, runtime):
    instance_id = create_instance()["instance_id"]
    assert Instance.objects.get(instance_id=instance_id).healthy is True
    runtime.set_healthy(instance_id, False)
    assert reconcile_pass().unhealthy == 1
    assert reconcile_pass().unhealthy == 0  # still unhealthy: not a new event
    instance = Instance.objects.get(instance_id=instance_id)
    assert instance.status == "running" and instance.healthy is False
    assert InstanceEvent.objects.filter(instance=instance, kind="unhealthy").count() == 1


def test_an_unhealthy_engine_still_counts_as_up(create_instance, customer_client, runtime):
    """It answers, so its customer can reach its page to fix the config: running, marked unhealthy."""
    instance_id = create_instance()["instance_id"]
    runtime.set_healthy(instance_id, False)
    restarted = customer_client.post(f"/api/saas/instances/{instance_id}/restart").json()
    assert restarted["status"] == "running" and restarted["healthy"] is False


def test_a_plan_change_rewrites_the_platform_file_and_limits_without_a_restart(create_instance, customer, runtime):
    instance_id = create_instance("personal")["instance_id"]
    started = runtime.status(instance_id).started_at
    instance = Instance.objects.get(instance_id=instance_id)
    professional = plan_get(code="professional")
    instance_change_plan(instance=instance, plan=professional)  # its task runs on commit (eagerly here)
    instance_apply_limits(instance_id=instance_id)  # idempotent: as a retried task would
    platform = yaml.safe_load(runtime.read_file(instance_id, "platform.yaml"))
    assert platform["max_trading_pairs"] == professional.max_trading_pairs
    stats = runtime.stats(instance_id)
    instance.refresh_from_db()
    assert (stats.cpu_limit, stats.memory_limit_mb) == (instance.cpu_limit, instance.memory_limit_mb)
    assert runtime.status(instance_id).started_at == started  # files and limits changed in place
