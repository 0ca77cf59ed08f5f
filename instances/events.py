"""Audit rows and live notifications for instance changes.

Every change writes an InstanceEvent in the caller's transaction and, once that commits,
publishes it to the instance's channel-layer group (console pages and log viewers listen)."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .models import Instance, InstanceEvent
from .signals import instance_events_recorded

logger = logging.getLogger(__name__)


def instance_group(instance_id: str) -> str:
    return f"instance.{instance_id}"


def _build(instance: Instance, kind: str, actor, from_status: str, detail: dict) -> InstanceEvent:
    return InstanceEvent(
        instance=instance, actor=actor, kind=kind, from_status=from_status, to_status=instance.status, detail=detail
    )


def event_view(event: InstanceEvent) -> dict:
    """An event as the API's feeds and the live websocket show it."""
    instance = event.instance
    actors = {None: "platform", instance.owner_id: "owner"}
    return {
        "id": event.pk,
        "instance_id": instance.instance_id,
        "kind": event.kind,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "actor": actors.get(event.actor_id, "support"),
        "detail": event.detail,
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
    }


def _publish_on_commit(event: InstanceEvent) -> None:
    """The console's live update for one event, once it is committed."""
    instance = event.instance
    message = {
        "type": "instance.status",
        "instance_id": instance.instance_id,
        "kind": event.kind,
        "status": instance.status,
        "desired_state": instance.desired_state,
        "detail": event.detail,
        "at": event.created_at.isoformat(),
        "event": event_view(event),
    }
    transaction.on_commit(lambda: _publish(instance.instance_id, message))


def _announce_on_commit(events: list[InstanceEvent]) -> None:
    if events:
        transaction.on_commit(lambda: instance_events_recorded.send(sender=InstanceEvent, events=events))


def instance_event_record(*, instance: Instance, kind: str, actor=None, from_status: str = "", **detail):
    event = _build(instance, kind, actor, from_status, detail)
    event.save()
    _publish_on_commit(event)
    _announce_on_commit([event])
    return event


def instance_events_record_bulk(entries: list[tuple[Instance, str, str, dict]]) -> None:
    """Many platform events (instance, kind, from_status, detail) in one INSERT, e.g. from reconcile."""
    events = InstanceEvent.objects.bulk_create(
        [_build(instance, kind, None, from_status, detail) for instance, kind, from_status, detail in entries]
    )
    for event in events:
        _publish_on_commit(event)
    _announce_on_commit(events)


def _publish(instance_id: str, message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(instance_group(instance_id), message)
    except Exception:  # a notification must never undo or fail the change it reports
        logger.warning("could not publish %s for %s", message["kind"], instance_id, exc_info=True)
