"""Read queries of instances."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Instance, InstanceEvent


def instance_list(*, owner) -> QuerySet[Instance]:
    return Instance.objects.filter(owner=owner).exclude(status=Instance.Status.DELETED).select_related("plan")


def instance_list_deleted_with_data(*, owner) -> QuerySet[Instance]:
    """Deleted instances whose data and backups are still kept (their Backups page restores them)."""
    from django.utils import timezone

    return Instance.objects.filter(
        owner=owner, status=Instance.Status.DELETED, data_retained_until__gt=timezone.now()
    ).order_by("-deleted_at")


def instance_get(*, owner, instance_id: str) -> Instance | None:
    """The owner's instance; another tenant's (or a deleted) instance is simply not found."""
    return instance_list(owner=owner).filter(instance_id=instance_id).first()


def instance_logs(*, instance: Instance, lines: int) -> list[str]:
    from .runtime import get_backend

    return get_backend().logs(instance.instance_id, tail=lines)


def instance_metrics(*, instance: Instance) -> dict:
    """Usage as fractions of the plan's limits, from the container's own cgroup; last_active is the
    engine's heartbeat (its last trading-loop tick)."""
    from datetime import datetime

    from django.utils import timezone

    from quantmesh.errors import ServiceError

    from . import engine_client
    from .runtime import get_backend
    from .runtime.base import RuntimeState

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
    from .runtime import get_backend
    from .trading import engine_status_fetch

    if instance.status != Instance.Status.RUNNING:
        return None
    return engine_status_fetch(instance=instance, backend=get_backend(), path="/api/trading?fills=100")


def instance_export(*, instance: Instance, kind: str, query: dict):
    """The engine's export (`trades` or `config`) of a running instance."""
    from urllib.parse import urlencode

    from quantmesh.errors import ServiceError

    from . import engine_client
    from .runtime import get_backend
    from .runtime.base import RuntimeState

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
