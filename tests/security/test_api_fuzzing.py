"""Property-based fuzzing of the whole REST API from its own OpenAPI schema (schemathesis), in
process, authenticated as a real customer with a plan. For every operation, with generated valid
and invalid input, on unknown ids and on the customer's real objects (deletes included): no answer
is a server error, and every answer's status code, content type, headers and body are the ones the
schema documents for it."""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.services import api_token_create
from backups.models import Backup
from instances import services as instance_services
from instances.models import CustomDomain
from strategies.models import AdviceRun

EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 8}
REAL_OBJECT_EXAMPLES = 6
CHECKS = [status_code_conformance, content_type_conformance, response_headers_conformance, response_schema_conformance]


@pytest.fixture
def api(db, user, subscribe, settings, tmp_path):
    settings.QM_RUNTIME_BACKEND = "process"
    settings.QM_PROCESS_ROOT = tmp_path / "instances"
    settings.QM_CREATE_WAIT_SECONDS = 0  # creates answer at once; nothing waits for engines here
    settings.QM_TOKEN_GUESS_LIMIT = 10**6  # negative cases send broken tokens; the address must not be blocked
    subscribe(user, "professional")
    token, raw = api_token_create(user=user, name="fuzz")
    # Like Django's test client: the handler must not close the test's database connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    loaded = schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler())
    yield loaded, {"Authorization": f"Bearer {raw}"}, token.pk
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def _real_objects(user) -> dict[str, str]:
    """Path parameters naming the customer's own objects, so operations answer more than 404."""
    instance = instance_services.instance_create(owner=user, plan_code="professional")
    backup = Backup.objects.create(instance=instance, owner=user, kind=Backup.Kind.MANUAL, status=Backup.Status.OK)
    domain = CustomDomain.objects.create(instance=instance, domain="fuzz.example.com")
    token, _ = api_token_create(user=user, name="to revoke")
    run = AdviceRun.objects.create(run_id="adv-fuzz", instance=instance, status=AdviceRun.Status.FAILED, error="fuzz")
    return {
        "run_id": run.run_id,
        "instance_id": instance.instance_id,
        "backup_id": backup.backup_id,
        "domain": domain.domain,
        "token_id": token.pk,
        "kind": "config",
    }


def _fuzz(operation, strategy, examples: int, headers: dict, tally: Counter, statuses: Counter) -> None:
    @given(case=strategy.filter(lambda case: str(case.path_parameters.get("token_id")) != headers["own_token_id"]))
    @hypothesis_settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case):
        response = case.call(headers={"Authorization": headers["Authorization"]})
        assert response.status_code < 500 or response.status_code == 503, (
            case.method,
            case.formatted_path,
            response.status_code,
            response.text[:300],
        )
        case.validate_response(response, checks=CHECKS)
        tally[operation.label] += 1
        statuses[response.status_code] += 1

    run()


def test_every_answer_is_documented(api, user, subscribe, settings):
    # A thousand calls from one user in a minute: past the per-user rate, which has its own tests.
    settings.QM_API_USER_RATE = settings.QM_API_ANON_RATE = "100000/minute"
    loaded, headers, token_id = api
    # Revoking the token every case uses would turn the rest into 401s: that id is never sent.
    headers = {**headers, "own_token_id": str(token_id)}
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) >= 35
    # Logging out revokes the token every case uses: it goes last (it alone made the old suite
    # check little more than 401 answers). Deletes go after the other calls on real objects.
    last = [op for op in operations if op.path == "/api/auth/logout"]
    calls = sorted((op for op in operations if op not in last), key=lambda op: op.method.upper() == "DELETE")
    tally, statuses = Counter(), Counter()
    for mode, examples in EXAMPLES.items():
        for operation in calls:
            has_input = len(operation.query) or len(operation.path_parameters) or len(operation.body)
            if mode == GenerationMode.NEGATIVE and not has_input:
                continue  # nothing to make invalid
            _fuzz(operation, operation.as_strategy(generation_mode=mode), examples, headers, tally, statuses)

    subscribe(user, "professional")  # the fuzzing may have cancelled it
    real = _real_objects(user)
    for operation in calls:
        names = {p.name for p in operation.path_parameters}
        if not names:
            continue

        def with_real_ids(case, names=names):
            case.path_parameters = {**case.path_parameters, **{n: real[n] for n in names}}
            return case

        _fuzz(operation, operation.as_strategy().map(with_real_ids), REAL_OBJECT_EXAMPLES, headers, tally, statuses)
    for operation in last:
        _fuzz(operation, operation.as_strategy(), 1, headers, tally, statuses)

    print(
        f"\nconformance: {sum(tally.values())} answers checked over {len(tally)} operations, "
        f"{len(CHECKS)} checks each; status codes {dict(sorted(statuses.items()))}"
    )
    assert set(tally) == {op.label for op in operations}
    # The errors were exercised, not only the happy paths, and the token stayed valid until logout.
    assert {200, 201, 204, 400, 404}.issubset(statuses), statuses
    assert statuses[401] < sum(statuses.values()) / 10, statuses
