"""What the engine is doing, in the portal: its trading state (trading, paused by risk control, or in
error with the engine's cause and reason) and a history of PnL, prices and resource use.

The state is recorded whenever the portal reads an engine's status: the sampler (every
QM_ENGINE_SAMPLE_SECONDS), the console's metrics poll, the trading view and the alert for an
unhealthy engine. A change of state writes an InstanceEvent (trading_error, trading_paused,
trading_resumed), which alerts listen to.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from . import engine_client
from .events import instance_event_record
from .models import EngineSample, Instance, InstanceEvent, TradingState
from .runtime import get_backend
from .runtime.base import BackendError

ENGINE_STATES = {TradingState.STARTING, TradingState.TRADING, TradingState.PAUSED, TradingState.ERROR}
EVENT_FOR_STATE = {
    TradingState.ERROR: InstanceEvent.Kind.TRADING_ERROR,
    TradingState.NOT_ANSWERING: InstanceEvent.Kind.TRADING_ERROR,
    TradingState.PAUSED: InstanceEvent.Kind.TRADING_PAUSED,
    TradingState.TRADING: InstanceEvent.Kind.TRADING_RESUMED,
}


def trading_state_of(payload: dict | None) -> tuple[str, str, str]:
    """(state, cause, reason) from the engine's /api/status body; None: the engine did not answer."""
    if payload is None:
        return TradingState.NOT_ANSWERING, "engine_not_answering", "the engine does not answer its status page"
    state = payload.get("trading_state")
    if state not in ENGINE_STATES:
        state = TradingState.STOPPED if payload.get("state") == "stopped" else TradingState.STARTING
    return state, str(payload.get("trading_cause") or "")[:40], str(payload.get("trading_reason") or "")[:300]


def engine_status_record(*, instance: Instance, payload: dict | None, stats=None) -> Instance:
    """Store what the engine said (and a history sample, at most one per sampling period)."""
    now = timezone.now()
    state, cause, reason = trading_state_of(payload)
    previous = instance.trading_state
    changed = (state, cause) != (instance.trading_state, instance.trading_cause)
    instance.trading_state, instance.trading_cause, instance.trading_reason = state, cause, reason
    instance.trading_checked_at = now
    Instance.objects.filter(pk=instance.pk).update(
        trading_state=state, trading_cause=cause, trading_reason=reason, trading_checked_at=now
    )
    if changed and state in EVENT_FOR_STATE and (previous or state != TradingState.TRADING):
        instance_event_record(
            instance=instance,
            kind=EVENT_FOR_STATE[state],
            from_status=instance.status,
            trading_state=state,
            previous=previous,
            cause=cause,
            reason=reason,
        )
    if payload is not None:
        _sample(instance, payload, stats, now)
    return instance


def _sample(instance: Instance, payload: dict, stats, now) -> None:
    period = timedelta(seconds=settings.QM_ENGINE_SAMPLE_SECONDS * 0.8)
    if EngineSample.objects.filter(instance=instance, at__gt=now - period).exists():
        return
    symbols = payload.get("symbols") or []
    EngineSample.objects.create(
        instance=instance,
        at=now,
        realized_pnl=sum(float(s.get("realized_pnl") or 0) for s in symbols),
        unrealized_pnl=sum(float(s.get("unrealized_pnl") or 0) for s in symbols),
        cpu_usage=round(stats.cpu_usage, 4) if stats else None,
        memory_usage=round(stats.memory_usage, 4) if stats else None,
        symbols={s["symbol"]: {"price": s.get("price"), "position": s.get("position")} for s in symbols},
    )


def _stats(backend, instance_id: str):
    try:
        return backend.stats(instance_id)
    except BackendError:
        return None  # resource use is optional in a sample


def _record_reply(instance: Instance, reply, backend) -> dict | None:
    payload = reply.json() if reply is not None and reply.status == 200 else None
    stats = _stats(backend, instance.instance_id) if payload is not None else None
    engine_status_record(instance=instance, payload=payload, stats=stats)
    return payload


def engine_status_fetch(*, instance: Instance, backend, path: str = "/api/status") -> dict | None:
    """The engine's status (or `path`, e.g. /api/trading), recorded; None when it does not answer."""
    return _record_reply(instance, engine_client.engine_request(instance, path, backend=backend), backend)


def engine_status_refresh(*, instance: Instance) -> dict | None:
    """Ask the engine now what it is doing and record it (e.g. why it is unhealthy, for an alert)."""
    return engine_status_fetch(instance=instance, backend=get_backend())


def engines_sample(*, backend=None) -> int:
    """Periodic: read every running engine's status (side by side, bounded), record state and history,
    and drop samples older than QM_ENGINE_HISTORY_DAYS. Returns how many engines answered."""
    backend = backend or get_backend()
    instances = list(Instance.objects.filter(status=Instance.Status.RUNNING))
    answered = 0
    if instances:
        with ThreadPoolExecutor(max_workers=min(8, len(instances))) as pool:
            replies = list(
                pool.map(lambda i: engine_client.engine_request(i, "/api/status", backend=backend), instances)
            )
        for instance, reply in zip(instances, replies, strict=True):
            answered += _record_reply(instance, reply, backend) is not None
    cutoff = timezone.now() - timedelta(days=settings.QM_ENGINE_HISTORY_DAYS)
    EngineSample.objects.filter(at__lt=cutoff).delete()
    return answered


def trading_history(*, instance: Instance, days: float) -> dict:
    """Columns for the console's charts: times (unix seconds), PnL, resource use, price per symbol."""
    since = timezone.now() - timedelta(days=days)
    rows = EngineSample.objects.filter(instance=instance, at__gte=since).order_by("at")
    rows = list(rows.values_list("at", "realized_pnl", "unrealized_pnl", "cpu_usage", "memory_usage", "symbols"))
    symbols = sorted({name for *_, entry in rows for name in entry})
    return {
        "time": [round(at.timestamp()) for at, *_ in rows],
        "realized_pnl": [r[1] for r in rows],
        "unrealized_pnl": [r[2] for r in rows],
        "cpu_usage": [r[3] for r in rows],
        "memory_usage": [r[4] for r in rows],
        "price": {name: [(r[5].get(name) or {}).get("price") for r in rows] for name in symbols},
        "position": {name: [(r[5].get(name) or {}).get("position") for r in rows] for name in symbols},
    }


def instances_with_pnl(instances: QuerySet[Instance]) -> list[Instance]:
    """The instances, each with `pnl` (realised + unrealised, from its latest sample) or None."""
    latest = EngineSample.objects.filter(instance=OuterRef("pk")).order_by("-at")
    annotated = instances.annotate(
        latest_realized=Subquery(latest.values("realized_pnl")[:1]),
        latest_unrealized=Subquery(latest.values("unrealized_pnl")[:1]),
    )
    result = list(annotated)
    for instance in result:
        instance.pnl = (
            None if instance.latest_realized is None else instance.latest_realized + (instance.latest_unrealized or 0)
        )
    return result


def trading_view(instance: Instance) -> tuple[str, str, str]:
    """The trading state to show: the engine's last word while the instance runs, else what its
    status implies (a stopped or failed instance is not trading, whatever the engine said last)."""
    if instance.status == Instance.Status.RUNNING:
        return instance.trading_state or TradingState.STARTING, instance.trading_cause, instance.trading_reason
    if instance.status in (Instance.Status.PENDING, Instance.Status.PROVISIONING, Instance.Status.RESTARTING):
        return TradingState.STARTING, "", ""
    return TradingState.STOPPED, "", instance.last_failure_reason if instance.status == Instance.Status.FAILED else ""
