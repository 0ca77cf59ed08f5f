"""Strategy tests run real engines on the `process` backend (the engine package installed from
./engine), real Celery tasks (in process, as the suite's settings run them) and PostgreSQL."""

from __future__ import annotations

import math
import os
import random

import pytest

from instances.runtime import get_backend


@pytest.fixture
def runtime(settings, tmp_path):
    settings.QM_RUNTIME_BACKEND = "process"
    settings.QM_RUNTIME_SCOPE = f"tests-{os.getpid()}"
    settings.QM_PROCESS_ROOT = tmp_path / "instances"
    settings.QM_PROVISION_TIMEOUT_SECONDS = 30
    settings.QM_STOP_TIMEOUT_SECONDS = 5
    get_backend.cache_clear()
    backend = get_backend()
    yield backend
    for instance_id in backend.list_all():
        backend.remove(instance_id, keep_data=False)
    get_backend.cache_clear()


def candles_csv(count: int = 800, *, seed: int = 7, start: float = 30000.0) -> str:
    """Seeded one-minute candles: a quiet stretch then a volatile one (CSV as customers upload it)."""
    rng = random.Random(seed)
    price, lines = start, ["ts,open,high,low,close,volume"]
    for index in range(count):
        sigma = 0.0008 if index < count // 2 else 0.003
        close = price * math.exp(rng.gauss(0, sigma))
        high, low = max(price, close) * (1 + sigma / 2), min(price, close) * (1 - sigma / 2)
        lines.append(f"{1_700_000_000_000 + index * 60_000},{price:.2f},{high:.2f},{low:.2f},{close:.2f},1.5")
        price = close
    return "\n".join(lines) + "\n"


@pytest.fixture
def customer(user, subscribe):
    subscribe(user, "professional")
    return user


@pytest.fixture
def customer_client(customer, runtime):
    from rest_framework.test import APIClient

    from accounts.services import api_token_create

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=customer)[1]}")
    return client


@pytest.fixture
def running_instance(customer_client):
    from instances.models import Instance

    response = customer_client.post("/api/saas/instances/create", {"plan": "personal"}, format="json")
    assert response.status_code == 201, response.content
    return Instance.objects.get(instance_id=response.json()["instance_id"])


def engine_config(instance) -> dict:
    from strategies.services import engine_config as read

    return read(instance)
