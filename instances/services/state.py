"""What the request side and the worker side of instances share: the locked row and a status change."""

from __future__ import annotations

from django.utils import timezone

from ..events import instance_event_record
from ..models import Instance, InstanceEvent

S = Instance.Status
D = Instance.Desired
K = InstanceEvent.Kind
# The columns a status change writes (status_set); saves name them with what else they change.
STATUS_FIELDS = ["status", "status_changed_at", "started_at", "stopped_at", "deleted_at"]
MIGRATION_ACTIVE = {"queued", "backup", "moving"}


def instance_locked(instance: Instance) -> Instance:
    """The instance's row as committed now, locked until the caller's transaction ends."""
    return Instance.objects.select_for_update().get(pk=instance.pk)


def status_set(instance: Instance, status: str, *, kind: str, actor=None, **detail) -> None:
    """Change the observed status, stamp the times, audit it. The caller holds the row locked, saves
    STATUS_FIELDS and holds the transaction."""
    previous = instance.status
    now = timezone.now()
    instance.status = status
    instance.status_changed_at = now
    if status == S.RUNNING:
        instance.started_at = now
    elif status == S.STOPPED:
        instance.stopped_at = now
    elif status == S.DELETED:
        instance.deleted_at = now
    instance_event_record(instance=instance, kind=kind, actor=actor, from_status=previous, **detail)
