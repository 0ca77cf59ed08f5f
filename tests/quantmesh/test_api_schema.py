"""The schema a generator reads: JSON-only bodies, every error documented in the one error shape,
answers documented as they are given, public calls without credentials, the version stated."""

from __future__ import annotations

import pytest

ERROR_REF = "#/components/schemas/Error"


@pytest.fixture
def schema(anon_client) -> dict:
    response = anon_client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method.upper(), operation


def test_request_bodies_are_json_only(schema):
    bodies = {(p, m): list(op["requestBody"]["content"]) for p, m, op in _operations(schema) if "requestBody" in op}
    assert len(bodies) >= 8
    assert {tuple(types) for types in bodies.values()} == {("application/json",)}, bodies


def test_every_operation_documents_its_errors_in_the_error_shape(schema):
    for path, method, operation in _operations(schema):
        responses = operation["responses"]
        for code in ("401", "429", "503"):
            assert responses[code]["content"]["application/json"]["schema"]["$ref"] == ERROR_REF, (method, path, code)
        if "{" in path:
            assert "404" in responses, (method, path)
        if method in ("POST", "PUT", "DELETE"):
            assert {"400", "409"} <= set(responses), (method, path)


def test_delete_instance_is_documented_as_it_answers(schema):
    responses = schema["paths"]["/api/saas/instances/{instance_id}"]["delete"]["responses"]
    assert "204" not in responses
    ref = responses["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/InstanceOutput"


def test_public_calls_take_no_credentials(schema):
    assert "security" not in schema  # no global requirement to override
    assert not schema["paths"]["/api/auth/login"]["post"].get("security")
    assert not schema["paths"]["/api/billing/plans"]["get"].get("security")
    assert schema["paths"]["/api/auth/me"]["get"]["security"]


def test_lists_document_their_cursor(schema):
    for path in ("/api/saas/instances", "/api/saas/alerts", "/api/saas/events", "/api/billing/invoices"):
        operation = schema["paths"][path]["get"]
        assert {"cursor", "limit"} <= {p["name"] for p in operation["parameters"]}, path
        assert {"Link", "X-Next-Cursor"} <= set(operation["responses"]["200"]["headers"]), path


@pytest.mark.parametrize("path", ["/api/billing/plans", "/api/auth/me", "/api/no-such-thing"])
def test_every_api_answer_states_the_version(anon_client, path):
    assert anon_client.get(path)["X-API-Version"] == "1"


def test_even_a_refused_oversized_body_states_the_version(anon_client, settings):
    body = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    response = anon_client.post("/api/auth/login", body, content_type="application/json")
    assert response.status_code == 413 and response["X-API-Version"] == "1"


def test_form_fields_are_refused_with_a_clear_error(anon_client):
    # Only JSON is documented; a form-encoded body (what a form-typed client would send) is refused.
    response = anon_client.post(
        "/api/auth/login", "email=a%40b.c&password=x", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_request"
