"""The one way the portal queues Celery tasks."""

from __future__ import annotations

from django.db import transaction


def enqueue_on_commit(task, *args, **kwargs) -> None:
    """Queue `task` with these arguments once the caller's transaction commits (at once outside one):
    a worker never reads a row before it is committed, and a rolled-back change queues nothing."""
    transaction.on_commit(lambda: task.delay(*args, **kwargs))
