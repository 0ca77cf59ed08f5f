"""Read queries of instances, and what other apps may read of an instance's runtime and engine
(backups, alerts and metrics go through these, never through the runtime or the engine client)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from django.db.models import F, QuerySet
from django.utils import timezone

from quantmesh.errors import ServiceError

from . import engine_client
from .engine_client import EngineReply
from .models import Instance, InstanceEvent
from .runtime import get_backend
from .runtime.base import BackendError, RuntimeState, RuntimeStats
from .trading import engine_status_fetch


def instance_list(*, owner) -> QuerySet[Instance]:
    return Instance.objects.filter(owner=owner).exclude(status=Instance.Status.DELETED).select_related("plan")


def instance_list_with_plan_code(*, owner) -> QuerySet[Instance]:
    """instance_list() for listings that show only the plan's code (as `plan_code`): building a Plan
    object per row was a quarter of the API list's cost."""
    return instance_list(owner=owner).select_related(None).annotate(plan_code=F("plan__code"))


def instance_list_live(*, owner) -> QuerySet[Instance]:
    """The owner's instances that count against their plan (not deleted or being deleted), oldest first."""
    return (
        Instance.objects.filter(owner=owner)
        .exclude(status__in=[Instance.Status.DELETED, Instance.Status.DELETING])
        .select_related("plan")
        .order_by("created_at", "pk")
    )


def instance_list_deleted_with_data(*, owner) -> QuerySet[Instance]:
    """Deleted instances whose data and backups are still kept (their Backups page restores them)."""
    return Instance.objects.filter(
        owner=owner, status=Instance.Status.DELETED, data_retained_until__gt=timezone.now()
    ).order_by("-deleted_at")


def instance_get(*, owner, instance_id: str) -> Instance | None:
    """The owner's instance; another tenant's (or a deleted) instance is simply not found."""
    return instance_list(owner=owner).filter(instance_id=instance_id).first()


def instance_logs(*, instance: Instance, lines: int) -> list[str]:
    return get_backend().logs(instance.instance_id, tail=lines)


def instance_metrics(*, instance: Instance) -> dict:
    """Usage as fractions of the plan's limits, from the container's own cgroup; last_active is the
    engine's heartbeat (its last trading-loop tick)."""
    backend = get_backend()
    if backend.status(instance.instance_id).state != RuntimeState.RUNNING:
        raise ServiceError(
            code="instance_not_running",
            message=f"The instance is {instance.status}: start it to see live metrics.",
            status=409,
        )
    stats = backend.stats(instance.instance_id)
    last_active = None
    reply = engine_client.engine_request(instance, "/api/status", backend=backend)
    if reply is not None and reply.status == 200:
        tick = reply.json().get("last_tick_at")
        last_active = datetime.fromisoformat(tick.replace("Z", "+00:00")) if tick else None
    uptime = int((timezone.now() - stats.started_at).total_seconds()) if stats.started_at else 0
    return {
        "instance_id": instance.instance_id,
        "cpu_usage": round(stats.cpu_usage, 4),
        "memory_usage": round(stats.memory_usage, 4),
        "cpu_limit": stats.cpu_limit,
        "memory_limit": stats.memory_limit_mb,
        "uptime": max(0, uptime),
        "last_active": last_active,
    }


def instance_trading(*, instance: Instance) -> dict | None:
    """The engine's live trading view (/api/trading) of a running instance, its state recorded on the
    way; None when the instance is not running or the engine does not answer."""
    if instance.status != Instance.Status.RUNNING:
        return None
    return engine_status_fetch(instance=instance, backend=get_backend(), path="/api/trading?fills=100")


def instance_export(*, instance: Instance, kind: str, query: dict):
    """The engine's export (`trades` or `config`) of a running instance."""
    backend = get_backend()
    if backend.status(instance.instance_id).state != RuntimeState.RUNNING:
        raise ServiceError(code="instance_not_running", message="Start the instance to export its data.", status=409)
    path = f"/api/export/{kind}" + (f"?{urlencode(query)}" if query else "")
    reply = engine_client.engine_request(instance, path, backend=backend, timeout=60)
    if reply is None:
        raise ServiceError(
            code="instance_unavailable", message="The instance is not answering; try again.", status=503
        )
    return reply


def instance_event_list(*, instance: Instance) -> QuerySet[InstanceEvent]:
    return InstanceEvent.objects.filter(instance=instance).select_related("instance")


def account_event_list(*, owner) -> QuerySet[InstanceEvent]:
    """Every event of the owner's instances, deleted ones included (their history stays readable)."""
    return InstanceEvent.objects.filter(instance__owner=owner).select_related("instance")


def instance_engine_running(*, instance: Instance) -> bool:
    """Whether the runtime runs the instance's engine now (whatever the row says)."""
    return get_backend().status(instance.instance_id).state == RuntimeState.RUNNING


def instance_engine_get(*, instance: Instance, path: str, timeout: float = 2.0) -> EngineReply | None:
    """GET `path` on the instance's engine, with its secret; None when it does not answer."""
    return engine_client.engine_request(instance, path, backend=get_backend(), timeout=timeout)


def instance_file_read(*, instance: Instance, path: str) -> bytes | None:
    """A file of the instance's data volume (None: there is none). BackendError when it cannot be read."""
    return get_backend().read_file(instance.instance_id, path)


def instance_runtime_stats(*, instance_id: str) -> RuntimeStats | None:
    """CPU and memory use against the limits, as the runtime sees them; None when it cannot tell."""
    try:
        return get_backend().stats(instance_id)
    except BackendError:
        return None
