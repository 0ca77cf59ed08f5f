"""Enterprise autoscaling: decisions on recorded metric series, and one real limit change on a
running container."""

from __future__ import annotations

import time

import pytest

from billing.models import Plan
from instances.models import Instance
from instances.services import instance_change_plan
from instances.services.autoscaling import (
    POLICY,
    Limits,
    Sample,
    autoscale_instance,
    autoscale_pass,
    decide,
    instance_limits_autoscale,
    sample_record,
)
from tests.db import committing_db

from .conftest import running_rows

BASE = Limits(cpu=4.0, memory_mb=8192)
NOW = 1_800_000_000.0


def series(minutes: float, cpu: float, memory: float = 0.5, every: float = 60) -> list[Sample]:
    """One sample a minute over the last `minutes`, at the given shares of the limits."""
    count = int(minutes * 60 / every)
    return [Sample(NOW - (count - i) * every, cpu, memory) for i in range(count + 1)]


def test_sustained_high_cpu_raises_cpu_by_a_step():
    decision = decide(samples=series(6, cpu=0.95), current=BASE, base=BASE, last_change_at=None, now=NOW)
    assert decision == (Limits(cpu=6.0, memory_mb=8192), "CPU above 80% for 5 minutes")


def test_sustained_high_memory_raises_memory_only():
    decision = decide(samples=series(6, cpu=0.2, memory=0.9), current=BASE, base=BASE, last_change_at=None, now=NOW)
    assert decision[0] == Limits(cpu=4.0, memory_mb=12288)


def test_a_spike_is_not_sustained():
    samples = series(6, cpu=0.95)
    samples[2] = Sample(samples[2].at, 0.4, 0.5)
    assert decide(samples=samples, current=BASE, base=BASE, last_change_at=None, now=NOW) is None


def test_too_little_history_decides_nothing():
    assert decide(samples=series(2, cpu=0.99), current=BASE, base=BASE, last_change_at=None, now=NOW) is None


def test_the_ceiling_holds():
    top = Limits(cpu=BASE.cpu * POLICY.ceiling, memory_mb=BASE.memory_mb * 4)
    assert decide(samples=series(6, cpu=1.0, memory=1.0), current=top, base=BASE, last_change_at=None, now=NOW) is None
    near = Limits(cpu=12.0, memory_mb=8192)
    assert decide(samples=series(6, cpu=1.0), current=near, base=BASE, last_change_at=None, now=NOW)[0].cpu == 16.0


def test_cooldown_after_a_change():
    samples = series(6, cpu=0.95)
    assert decide(samples=samples, current=BASE, base=BASE, last_change_at=NOW - 300, now=NOW) is None
    assert decide(samples=samples, current=BASE, base=BASE, last_change_at=NOW - 700, now=NOW) is not None


def test_idle_scales_back_down_but_never_below_the_plan():
    raised = Limits(cpu=6.0, memory_mb=12288)
    decision = decide(samples=series(16, cpu=0.1, memory=0.1), current=raised, base=BASE, last_change_at=None, now=NOW)
    assert decision[0] == BASE and "below 30%" in decision[1]
    assert (
        decide(samples=series(16, cpu=0.1, memory=0.1), current=BASE, base=BASE, last_change_at=None, now=NOW) is None
    )
    # Idle for less than the down period: kept.
    assert (
        decide(samples=series(10, cpu=0.1, memory=0.1), current=raised, base=BASE, last_change_at=None, now=NOW) is None
    )


@committing_db
@pytest.mark.parametrize("runtime", ["docker"], indirect=True)
def test_a_busy_enterprise_container_gets_more_cpu_live(runtime, user, subscribe, customer_client):
    # Enterprise limits shrunk to fit this 2-core test machine (Docker refuses more CPUs than the host has).
    Plan.objects.filter(code="enterprise").update(cpu_limit=0.5, memory_limit_mb=512)
    subscribe(user, "enterprise")
    response = customer_client.post("/api/saas/instances/create", {"plan": "enterprise"}, format="json")
    assert response.status_code == 201, response.content
    instance_id = response.json()["instance_id"]
    container = runtime.client.containers.get(runtime.container_name(instance_id))
    started_at = container.attrs["State"]["StartedAt"]
    assert container.attrs["HostConfig"]["NanoCpus"] == 5 * 10**8
    # The recorded series: six busy minutes.
    now = time.time()
    samples = [Sample(now - minute * 60, 0.97, 0.2) for minute in range(6, -1, -1)]
    instance = Instance.objects.get(instance_id=instance_id)
    assert autoscale_instance(instance=instance, samples=samples, now=now, backend=runtime) is True
    container.reload()
    assert container.attrs["HostConfig"]["NanoCpus"] == 75 * 10**7
    assert container.attrs["State"]["StartedAt"] == started_at  # no restart
    instance = Instance.objects.get(instance_id=instance_id)
    assert instance.cpu_limit == 0.75 and instance.memory_limit_mb == 512
    event = instance.events.get(kind="autoscaled")
    assert event.detail["cpu"] == [0.5, 0.75]
    # Cooldown: still busy a minute later, nothing changes.
    assert autoscale_instance(instance=instance, samples=samples, now=now + 60, backend=runtime) is False


@committing_db
@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_other_plans_are_not_scaled(runtime, user, subscribe, create_instance):
    instance_id = create_instance()["instance_id"]  # professional
    now = time.time()
    busy = [Sample(now - minute * 60, 0.99, 0.99) for minute in range(6, -1, -1)]
    instance = Instance.objects.get(instance_id=instance_id)
    assert autoscale_instance(instance=instance, samples=busy, now=now, backend=runtime) is False
    for sample in busy:
        sample_record(instance_id, sample)
    assert autoscale_pass(now=now) == 0
    assert Instance.objects.get(instance_id=instance_id).cpu_limit_scaled is None


@pytest.mark.django_db
def test_limits_decided_before_a_plan_change_are_not_recorded(user, subscribe, django_capture_on_commit_callbacks):
    """Autoscaling decides on the row it loaded; a plan change committed since wins: the old plan's
    scaled limits are not written over it, and the new plan's limits are applied again."""
    subscribe(user, "enterprise")
    decided_on = running_rows(user, 1, prefix="s")[0]
    instance_change_plan(instance=decided_on, plan=Plan.objects.get(code="professional"))
    with django_capture_on_commit_callbacks() as queued:
        recorded = instance_limits_autoscale(
            instance=decided_on, current=BASE, wanted=Limits(cpu=6.0, memory_mb=8192), base=BASE, reason="busy"
        )
    assert recorded is False
    instance = Instance.objects.get(pk=decided_on.pk)
    assert (instance.plan.code, instance.cpu_limit_scaled) == ("professional", None)
    assert not instance.events.filter(kind="autoscaled").exists()
    assert len(queued) == 1  # apply_limits: the professional plan's limits back on the engine
