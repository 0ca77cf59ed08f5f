"""Property-based fuzzing of the whole REST API from its own OpenAPI schema (schemathesis), in
process, authenticated as a real customer with a plan: no answer is a server error, and every
documented answer matches the schema."""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from accounts.services import api_token_create

EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def api(db, user, subscribe, settings, tmp_path):
    settings.QM_RUNTIME_BACKEND = "process"
    settings.QM_PROCESS_ROOT = tmp_path / "instances"
    settings.QM_CREATE_WAIT_SECONDS = 0  # creates answer at once; nothing waits for engines here
    subscribe(user, "professional")
    _, raw = api_token_create(user=user, name="fuzz")
    # Like Django's test client: the handler must not close the test's database connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    loaded = schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler())
    yield loaded, {"Authorization": f"Bearer {raw}"}
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def test_api_never_fails_and_answers_as_documented(api):
    loaded, headers = api
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) >= 30
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck)
        )
        def fuzz(case):
            response = case.call(headers=headers)
            assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
            case.validate_response(response, checks=[content_type_conformance, response_schema_conformance])

        fuzz()
