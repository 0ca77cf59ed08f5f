"""JSON log lines carrying a request id: a web request takes the id the proxy sent (X-Request-ID) or
a new one; Celery tasks enqueued while serving it carry it in their headers, and the portal's calls
to an engine send it on. One id follows a user's action through the portal, the worker and the engine
calls it made."""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

from celery import signals

logger = logging.getLogger(__name__)
REQUEST_ID_HEADER = "X-Request-ID"
TASK_HEADER = "qm_request_id"
request_id: ContextVar[str] = ContextVar("request_id", default="")
# An id from outside is kept only when it is short and plain (it ends up in every log line).
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted_request_id(given: str | None) -> str:
    return given if given and VALID_REQUEST_ID.fullmatch(given) else new_request_id()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, and the error if any."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if current := request_id.get():
            line["request_id"] = current
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class RequestIdMiddleware:
    """Sets the request id for everything the request logs or enqueues, and returns it to the client."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = request_id.set(accepted_request_id(request.headers.get(REQUEST_ID_HEADER)))
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id.get()
            return response
        finally:
            request_id.reset(token)


def connect_celery_signals() -> None:
    """A task carries the id of the request (or task) that enqueued it, and logs with it."""
    @signals.before_task_publish.connect(weak=False)
    def carry(headers=None, **kwargs):
        if headers is not None and (current := request_id.get()):
            headers[TASK_HEADER] = current

    @signals.task_prerun.connect(weak=False)
    def adopt(task=None, **kwargs):
        # A worker puts custom message headers on the request; an eager run keeps them in `headers`.
        context = getattr(task, "request", None)
        given = getattr(context, TASK_HEADER, None) or (getattr(context, "headers", None) or {}).get(TASK_HEADER)
        request_id.set(given or new_request_id())
        if given:  # part of a user's action: say which task it ran, under that action's id
            logger.info("task %s started", getattr(task, "name", "?"))

    @signals.task_postrun.connect(weak=False)
    def forget(**kwargs):
        request_id.set("")
