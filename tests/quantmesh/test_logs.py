"""JSON log lines with one request id through a web request, the Celery task it enqueues and the
engine call made on its behalf."""

import json
import logging

import pytest

from quantmesh.celery import app
from quantmesh.logs import REQUEST_ID_HEADER, TASK_HEADER, JsonFormatter, request_id


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("quantmesh.test", logging.INFO, __file__, 1, message, None, None)


def test_a_json_line_carries_the_request_id_and_escapes_the_message():
    token = request_id.set("abcdef0123456789")
    try:
        line = JsonFormatter().format(_record('a "quoted"\nmessage'))
    finally:
        request_id.reset(token)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == 'a "quoted"\nmessage'
    assert (parsed["level"], parsed["logger"], parsed["request_id"]) == ("INFO", "quantmesh.test", "abcdef0123456789")


@pytest.mark.django_db
def test_a_request_keeps_a_plain_given_id_and_replaces_a_hostile_one(client):
    kept = client.get("/healthz", HTTP_X_REQUEST_ID="trace-1234abcd")
    assert kept[REQUEST_ID_HEADER] == "trace-1234abcd"
    replaced = client.get("/healthz", HTTP_X_REQUEST_ID='x"\ninjected log line')
    assert len(replaced[REQUEST_ID_HEADER]) == 32 and "\n" not in replaced[REQUEST_ID_HEADER]
    fresh = client.get("/healthz")
    assert fresh[REQUEST_ID_HEADER] != replaced[REQUEST_ID_HEADER]


def test_a_task_enqueued_during_a_request_runs_with_its_id():
    headers: dict = {}
    token = request_id.set("req-0123456789")
    try:
        from celery import signals

        signals.before_task_publish.send(sender="t", headers=headers, body=None)
    finally:
        request_id.reset(token)
    assert headers[TASK_HEADER] == "req-0123456789"

    seen = []

    @app.task(bind=True)
    def probe(self):
        seen.append(request_id.get())

    probe.apply(headers=headers)  # runs the task with those message headers, as a worker would
    assert seen == ["req-0123456789"]
    assert request_id.get() == ""  # cleared after the task
