"""The worker side: what converge writes, and what it must leave alone."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.selectors import plan_get
from instances.models import Instance
from instances.services import instance_change_plan, instance_start, instance_stop
from tests.capture import capture_instance_events
from tests.db import committing_db

pytestmark = committing_db


@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_converge_keeps_a_plan_change_and_autoscaling_written_while_it_worked(create_instance, runtime, monkeypatch):
    """A converge works for up to a minute on the row it loaded when it began; a plan change and an
    autoscale committed meanwhile must survive the status it records at the end (a lost update)."""
    instance_id = create_instance("professional")["instance_id"]
    instance_stop(instance=Instance.objects.get(instance_id=instance_id))
    assert Instance.objects.get(instance_id=instance_id).status == "stopped"
    real_start = runtime.start

    def start_while_the_plan_changes(unit_id: str) -> None:
        real_start(unit_id)
        # Meanwhile (the converge below is between loading the row and recording "running"):
        instance_change_plan(instance=Instance.objects.get(instance_id=unit_id), plan=plan_get(code="enterprise"))
        Instance.objects.filter(instance_id=unit_id).update(cpu_limit_scaled=Decimal("6.00"))

    monkeypatch.setattr(runtime, "start", start_while_the_plan_changes)
    with capture_instance_events() as published:
        instance_start(instance=Instance.objects.get(instance_id=instance_id))  # converges on commit

    # (the plan change takes a backup before it touches the running engine)
    assert [event.kind for event in published] == ["start_requested", "plan_changed", "backup_created", "running"]
    running = published[-1]
    assert (running.from_status, running.to_status) == ("provisioning", "running")
    instance = Instance.objects.select_related("plan").get(instance_id=instance_id)
    assert instance.status == "running"
    assert instance.plan.code == "enterprise"
    assert instance.cpu_limit_scaled == Decimal("6.00")
