"""One error shape on /api/ for every failure, never an HTML page or a stack trace."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import path
from rest_framework.views import APIView

from quantmesh.urls import urlpatterns as real_urlpatterns

pytestmark = pytest.mark.django_db


def assert_error_shape(response, status: int, code: str):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return error


def test_malformed_json_is_400(anon_client):
    response = anon_client.post("/api/auth/login", "{not json", content_type="application/json")
    error = assert_error_shape(response, 400, "malformed_request")
    assert "JSON" in error["message"]


def test_json_array_body_is_400(anon_client):
    response = anon_client.post("/api/auth/login", "[1, 2]", content_type="application/json")
    assert_error_shape(response, 400, "malformed_request")


def test_wrong_content_type_is_415(anon_client):
    response = anon_client.post("/api/auth/login", "email=a", content_type="text/plain")
    error = assert_error_shape(response, 415, "unsupported_media_type")
    assert "text/plain" in error["message"]


def test_unknown_api_path_is_json_404(anon_client):
    assert_error_shape(anon_client.get("/api/no/such/thing"), 404, "not_found")


def test_unknown_page_is_html_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_wrong_method_is_405(api_client):
    assert_error_shape(api_client.delete("/api/auth/me"), 405, "method_not_allowed")


def test_throttle_has_retry_after(anon_client, settings):
    settings.QM_LOGIN_IP_LIMIT = 0
    response = anon_client.post("/api/auth/login", {"email": "a@example.com", "password": "x"}, format="json")
    assert_error_shape(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1


class Boom(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request):
        raise RuntimeError("secret internals")


urlpatterns = [path("api/boom", Boom.as_view()), *real_urlpatterns]


@override_settings(ROOT_URLCONF=__name__, DEBUG=False)
def test_unhandled_error_is_json_500_without_internals(anon_client, caplog):
    response = anon_client.get("/api/boom")
    error = assert_error_shape(response, 500, "server_error")
    assert "secret internals" not in response.content.decode()
    assert "has been logged" in error["message"]
    assert any("secret internals" in r.getMessage() or r.exc_info for r in caplog.records)


def test_openapi_schema_and_docs(anon_client, client):
    schema = anon_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for expected in ["/api/auth/login", "/api/auth/me", "/api/auth/tokens", "/api/billing/plans"]:
        assert expected in paths
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
