"""Capture what instances publish, as Zulip's `capture_send_event_calls` does for its events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection
from django.test import TestCase

from instances.models import InstanceEvent
from instances.signals import instance_events_recorded


@contextmanager
def capture_instance_events(*, expected: int | None = None) -> Iterator[list[InstanceEvent]]:
    """The instance events published (announced once committed) inside the block, in order; with
    `expected`, asserts how many on leaving it. Inside a test's rolled-back transaction the block's
    on-commit work runs at its end, as a commit would run it."""
    captured: list[InstanceEvent] = []

    def receiver(sender, events, **kwargs) -> None:
        captured.extend(events)

    instance_events_recorded.connect(receiver, weak=False, dispatch_uid="tests.capture_instance_events")
    try:
        if connection.in_atomic_block:
            with TestCase.captureOnCommitCallbacks(execute=True):
                yield captured
        else:
            yield captured
    finally:
        instance_events_recorded.disconnect(dispatch_uid="tests.capture_instance_events")
    if expected is not None:
        assert len(captured) == expected, [(e.kind, e.instance.instance_id) for e in captured]
