"""Enterprise autoscaling (the manual: 企业版支持自动扩容).

Each minute the pass records every running enterprise instance's CPU and memory use (as shares of
its current limits). When one stays above HIGH for SUSTAIN_UP its limits rise by STEP, up to
CEILING times the plan's; when it stays below LOW for SUSTAIN_DOWN they fall back by STEP, never
below the plan's. After a change the instance is left alone for COOLDOWN. Every change is an
`autoscaled` event on the instance. The decision is a pure function of the recorded series.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from decimal import Decimal

from django.core.cache import cache
from django.db import transaction

from billing.selectors import entitlements_for
from quantmesh.tasks import enqueue_on_commit

from .. import tasks
from ..events import instance_event_record
from ..models import Instance
from ..runtime import get_backend
from ..runtime.base import BackendError
from .state import K, instance_locked


@dataclass(frozen=True)
class Policy:
    high: float = 0.8
    low: float = 0.3
    sustain_up: float = 300
    sustain_down: float = 900
    step: float = 1.5
    ceiling: float = 4.0  # times the plan's limits
    cooldown: float = 600


@dataclass(frozen=True)
class Sample:
    at: float
    cpu: float  # share of the CPU limit in force when sampled
    memory: float  # share of the memory limit in force when sampled


@dataclass(frozen=True)
class Limits:
    cpu: float
    memory_mb: int


POLICY = Policy()
logger = logging.getLogger(__name__)
HISTORY_SECONDS = 1200


def _sustained(samples: list[Sample], now: float, period: float, test) -> bool:
    """`test` held for every sample of the last `period`, and the samples cover (most of) it."""
    recent = [s for s in samples if s.at >= now - period]
    return bool(recent) and recent[0].at <= now - period * 0.8 and all(test(s) for s in recent)


def decide(
    *, samples: list[Sample], current: Limits, base: Limits, last_change_at: float | None, now: float, policy=POLICY
) -> tuple[Limits, str] | None:
    """The new limits and why, or None to leave them."""
    if last_change_at is not None and now - last_change_at < policy.cooldown:
        return None
    samples = sorted(samples, key=lambda s: s.at)
    cpu_high = _sustained(samples, now, policy.sustain_up, lambda s: s.cpu >= policy.high)
    memory_high = _sustained(samples, now, policy.sustain_up, lambda s: s.memory >= policy.high)
    if cpu_high or memory_high:
        wanted = Limits(
            cpu=round(min(current.cpu * policy.step, base.cpu * policy.ceiling), 2) if cpu_high else current.cpu,
            memory_mb=int(min(current.memory_mb * policy.step, base.memory_mb * policy.ceiling))
            if memory_high
            else current.memory_mb,
        )
        busy = " and ".join(n for n, high in (("CPU", cpu_high), ("memory", memory_high)) if high)
        reason = f"{busy} above {policy.high:.0%} for {policy.sustain_up / 60:.0f} minutes"
        return (wanted, reason) if wanted != current else None
    idle = _sustained(samples, now, policy.sustain_down, lambda s: s.cpu <= policy.low and s.memory <= policy.low)
    if idle and current != base:
        wanted = Limits(
            cpu=round(max(current.cpu / policy.step, base.cpu), 2),
            memory_mb=int(max(current.memory_mb / policy.step, base.memory_mb)),
        )
        return wanted, f"CPU and memory below {policy.low:.0%} for {policy.sustain_down / 60:.0f} minutes"
    return None


def _history_key(instance_id: str) -> str:
    return f"autoscale:{instance_id}"


def samples_recorded(instance_id: str) -> list[Sample]:
    return [Sample(*row) for row in cache.get(_history_key(instance_id), [])]


def sample_record(instance_id: str, sample: Sample) -> list[Sample]:
    history = [s for s in samples_recorded(instance_id) if s.at >= sample.at - HISTORY_SECONDS] + [sample]
    cache.set(_history_key(instance_id), [(s.at, s.cpu, s.memory) for s in history], timeout=HISTORY_SECONDS * 2)
    return history


def _entitled(instance: Instance) -> bool:
    return entitlements_for(instance.owner).has_feature("autoscaling")


def autoscale_pass(*, now: float | None = None) -> int:
    """Periodic: sample every running enterprise instance, then decide and apply. Returns the changes."""
    now = time.time() if now is None else now
    backend = get_backend()
    changes = 0
    running = Instance.objects.filter(status=Instance.Status.RUNNING).select_related("plan", "owner")
    entitled_owners: dict[int, bool] = {}  # one entitlements lookup per owner, not per instance
    for instance in running:
        if instance.owner_id not in entitled_owners:
            entitled_owners[instance.owner_id] = _entitled(instance)
        if not entitled_owners[instance.owner_id]:
            continue
        try:
            stats = backend.stats(instance.instance_id)
        except BackendError:
            continue
        samples = sample_record(instance.instance_id, Sample(now, stats.cpu_usage, stats.memory_usage))
        changes += autoscale_instance(instance=instance, samples=samples, now=now, backend=backend)
    return changes


def autoscale_instance(*, instance: Instance, samples: list[Sample], now: float, backend) -> bool:
    """Decide on the instance's recorded series and apply the change live. Returns whether it changed."""
    if not _entitled(instance):
        return False
    last = instance.events.filter(kind=K.AUTOSCALED).order_by("-created_at").values_list("created_at", flat=True)
    last_change_at = last[0].timestamp() if last else None
    current = Limits(instance.cpu_limit, instance.memory_limit_mb)
    base = Limits(float(instance.plan.cpu_limit), instance.plan.memory_limit_mb)
    decision = decide(samples=samples, current=current, base=base, last_change_at=last_change_at, now=now)
    if decision is None:
        return False
    wanted, reason = decision
    try:
        backend.update_limits(instance.instance_id, wanted.cpu, wanted.memory_mb)  # live: no restart
    except BackendError as error:  # e.g. more CPUs than the host has: stays as it is, tried again later
        logger.warning("autoscaling %s to %s refused: %s", instance.instance_id, wanted, error)
        return False
    if not instance_limits_autoscale(instance=instance, current=current, wanted=wanted, base=base, reason=reason):
        return False
    cache.delete(_history_key(instance.instance_id))  # shares of the old limits mean nothing now
    return True


def instance_limits_autoscale(
    *, instance: Instance, current: Limits, wanted: Limits, base: Limits, reason: str
) -> bool:
    """Record autoscaled limits (`base`: the plan's, stored as none) with their event. A plan change
    committed since the decision wins: nothing is recorded, the new plan's limits are applied again
    (over the ones just set live), and it returns False."""
    with transaction.atomic():
        locked = instance_locked(instance)
        if locked.plan_id != instance.plan_id:
            enqueue_on_commit(tasks.apply_limits, instance.instance_id)
            return False
        locked.cpu_limit_scaled = None if wanted.cpu == base.cpu else Decimal(str(wanted.cpu))
        locked.memory_limit_mb_scaled = None if wanted.memory_mb == base.memory_mb else wanted.memory_mb
        locked.save(update_fields=["cpu_limit_scaled", "memory_limit_mb_scaled"])
        instance.cpu_limit_scaled, instance.memory_limit_mb_scaled = (
            locked.cpu_limit_scaled,
            locked.memory_limit_mb_scaled,
        )
        instance_event_record(
            instance=locked,
            kind=K.AUTOSCALED,
            from_status=locked.status,
            cpu=[current.cpu, wanted.cpu],
            memory_mb=[current.memory_mb, wanted.memory_mb],
            reason=reason,
        )
    return True
