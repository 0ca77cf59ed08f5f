"""One reconcile pass: compare every instance's desired state with what the runtime reports.

It must stay cheap for many instances: one runtime listing, one query for the instances, one
bulk update and one bulk insert of events, whatever the count. Slow work (starting, stopping,
creating) is handed to converge tasks; the pass itself only decides.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from quantmesh.tasks import enqueue_on_commit

from .. import tasks
from ..events import instance_events_record_bulk
from ..models import Instance
from ..runtime import get_backend
from ..runtime.base import RuntimeState, RuntimeStatus
from .converge import failure_reason
from .state import D, K, S

TRANSITIONAL = {S.PENDING, S.PROVISIONING, S.RESTARTING, S.DELETING}
UPDATED_FIELDS = [
    "status",
    "status_changed_at",
    "healthy",
    "restart_count",
    "next_restart_at",
    "last_exit_code",
    "last_failure_reason",
    "last_failure_at",
    "started_at",
]


@dataclass
class ReconcileReport:
    checked: int = 0
    crashed: int = 0
    crash_loops: int = 0
    converges: int = 0
    orphans_removed: int = 0
    unhealthy: int = 0
    seconds: float = 0.0
    converge_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("converge_ids")
        return data


def _backoff(restarts: int) -> timedelta:
    seconds = settings.QM_RESTART_BACKOFF_SECONDS * 2 ** max(0, restarts - 1)
    return timedelta(seconds=min(seconds, settings.QM_RESTART_BACKOFF_MAX_SECONDS))


def _crashed(instance: Instance, observed: RuntimeStatus | None, now, events: list, report: ReconcileReport):
    """A running instance whose container died: record why, restart with back-off or declare a crash loop."""
    reason = failure_reason(observed) if observed else "the container disappeared"
    window = timedelta(seconds=settings.QM_CRASH_LOOP_WINDOW_SECONDS)
    if instance.started_at and now - instance.started_at > window:
        instance.restart_count = 0  # a crash after a long healthy run does not count towards a loop
    instance.last_exit_code = observed.exit_code if observed else None
    instance.last_failure_reason = reason
    instance.last_failure_at = now
    instance.healthy = None
    previous = instance.status
    instance.status_changed_at = now
    report.crashed += 1
    if instance.restart_count >= settings.QM_CRASH_LOOP_RESTARTS:
        instance.status = S.FAILED
        instance.next_restart_at = None
        instance.last_failure_reason = f"crash loop: {instance.restart_count} restarts, last {reason}"
        report.crash_loops += 1
        events.append((instance, K.CRASH_LOOP, previous, {"reason": instance.last_failure_reason}))
        return
    instance.restart_count += 1
    instance.next_restart_at = now + _backoff(instance.restart_count)
    instance.status = S.RESTARTING
    events.append(
        (instance, K.CRASHED, previous, {"reason": reason, "restart_in": str(_backoff(instance.restart_count))})
    )


def _unreachable(instance: Instance, observed: RuntimeStatus, now, events: list) -> None:
    """Its node does not answer (or is drained): not a crash. Nothing is restarted or removed; the
    instance shows why and comes back with its node."""
    if instance.status in (S.UNREACHABLE, S.STOPPED, S.DELETING, S.FAILED):
        return
    previous = instance.status
    instance.status = S.UNREACHABLE
    instance.status_changed_at = now
    instance.healthy = None
    instance.last_failure_reason = observed.error[:200]
    instance.last_failure_at = now
    events.append((instance, K.NODE_UNREACHABLE, previous, {"reason": observed.error}))


def _restarted_by_runtime(instance: Instance, observed: RuntimeStatus) -> bool:
    """Started (at the earliest) after we last saw it start: something restarted it behind our back."""
    return bool(
        observed.state == RuntimeState.RUNNING
        and observed.started_at
        and instance.started_at
        and observed.started_at > instance.started_at + timedelta(seconds=5)
    )


def instances_observed_record(*, changed: list[Instance], events: list, converge_ids: list[str]) -> None:
    """What one pass found, in one transaction: the changed rows (UPDATED_FIELDS only) in one UPDATE,
    their events in one INSERT; then a converge for each instance that needs one."""
    with transaction.atomic():
        if changed:
            Instance.objects.bulk_update(changed, UPDATED_FIELDS)
        instance_events_record_bulk(events)
        for instance_id in converge_ids:
            enqueue_on_commit(tasks.converge, instance_id)


def reconcile_pass(*, backend=None) -> ReconcileReport:
    started = time.monotonic()
    backend = backend or get_backend()
    report = ReconcileReport()
    now = timezone.now()
    observed_all = backend.list_all()
    instances = list(Instance.objects.exclude(status=S.DELETED))
    stuck_after = timedelta(seconds=settings.QM_PROVISION_TIMEOUT_SECONDS * 2)
    changed: list[Instance] = []
    events: list = []

    for instance in instances:
        report.checked += 1
        observed = observed_all.pop(instance.instance_id, None)
        state = observed.state if observed else RuntimeState.MISSING
        before = (instance.status, instance.healthy, instance.restart_count)
        stuck = instance.status in TRANSITIONAL and now - instance.status_changed_at > stuck_after
        wants_converge = stuck  # e.g. a worker died mid-provision: converge again, it is idempotent
        if state == RuntimeState.UNREACHABLE:
            _unreachable(instance, observed, now, events)
        elif instance.status == S.UNREACHABLE:
            # Its node is back: running again, or the node's restart stopped the engine (start it).
            if state == RuntimeState.RUNNING:
                instance.status, instance.status_changed_at = S.RUNNING, now
                events.append((instance, K.NODE_BACK, S.UNREACHABLE, {}))
            wants_converge = state != RuntimeState.RUNNING or instance.desired_state != D.RUNNING
        elif instance.desired_state == D.RUNNING:
            if instance.status == S.RUNNING and state in (RuntimeState.EXITED, RuntimeState.MISSING):
                _crashed(instance, observed, now, events, report)
            elif instance.status == S.RUNNING and observed:
                if _restarted_by_runtime(instance, observed):
                    # The runtime's own restart policy brought a crashed engine back: record the crash.
                    instance.restart_count += 1
                    instance.started_at = observed.started_at
                    instance.last_failure_reason = "the engine crashed; the runtime restarted it"
                    instance.last_failure_at = now
                    report.crashed += 1
                    events.append((instance, K.CRASHED, instance.status, {"reason": instance.last_failure_reason}))
                if observed.healthy is not None:
                    if instance.healthy and not observed.healthy:
                        report.unhealthy += 1
                        events.append((instance, K.UNHEALTHY, instance.status, {"reason": "engine heartbeat is stale"}))
                    instance.healthy = observed.healthy
            elif instance.status == S.RESTARTING and instance.next_restart_at and instance.next_restart_at <= now:
                wants_converge = True
        elif instance.desired_state == D.STOPPED:
            wants_converge |= instance.status == S.STOPPED and state == RuntimeState.RUNNING
        if wants_converge:
            report.converge_ids.append(instance.instance_id)
        if (instance.status, instance.healthy, instance.restart_count) != before:
            changed.append(instance)

    # What is left are containers of deleted or unknown instances: remove them, keep their data.
    for orphan_id in observed_all:
        backend.remove(orphan_id, keep_data=True)
        report.orphans_removed += 1

    instances_observed_record(changed=changed, events=events, converge_ids=report.converge_ids)
    report.converges = len(report.converge_ids)
    report.seconds = time.monotonic() - started
    return report
