"""Liveness (/healthz) touches nothing; readiness (/readyz) probes the database, Redis and the broker
for real and names what does not answer."""

import pytest
from django.db import OperationalError

from tests.conftest import require_service
from tests.live_server import free_port


@pytest.mark.django_db
def test_healthz_answers_without_touching_the_database(client, django_assert_num_queries, monkeypatch):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}

    def database_down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr("django.db.backends.base.base.BaseDatabaseWrapper.ensure_connection", database_down)
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["error"]["details"]["database"] == "unreachable: OperationalError"


@pytest.mark.django_db
def test_readyz_answers_ok_when_every_dependency_does(client, settings):
    require_service(bool(settings.REDIS_URL), "REDIS_URL is not set: the Redis and broker probes need a real Redis")
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok", "broker": "ok"}}


@pytest.mark.django_db
def test_readyz_names_redis_and_the_broker_when_they_do_not_answer(client, settings):
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings.REDIS_URL = closed
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": closed,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    from quantmesh.celery import app

    previous = app.conf.broker_url
    app.conf.broker_url = closed
    try:
        response = client.get("/readyz")
    finally:
        app.conf.broker_url = previous
    assert response.status_code == 503 and response["Retry-After"] == "5"
    body = response.json()["error"]
    assert body["code"] == "not_ready"
    assert body["details"]["database"] == "ok"
    assert body["details"]["redis"].startswith("unreachable: ")
    assert body["details"]["broker"].startswith("unreachable: ")
    assert "redis (unreachable" in body["message"] and "broker (unreachable" in body["message"]
    assert "127.0.0.1" not in str(body)  # no addresses (or credentials) in the answer
