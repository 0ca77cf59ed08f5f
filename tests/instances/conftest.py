"""Instances run for real, on the `process` backend and on a real Docker engine."""

from __future__ import annotations

import os

import pytest
from rest_framework.test import APIClient

from accounts.services import api_token_create
from instances.runtime import get_backend

from ..conftest import docker_engine_answers, require_service

# The second node deploy/scripts/second-node.sh makes (region "b"; the manager's node is region "a").
SECOND_NODE = "qm-node2"
SECOND_NODE_ENGINE = f"unix:///run/{SECOND_NODE}/docker.sock"


def second_node_available() -> bool:
    import docker
    from docker.errors import DockerException

    try:
        return docker.DockerClient(base_url=SECOND_NODE_ENGINE, timeout=5).info()["Swarm"]["LocalNodeState"] == "active"
    except (DockerException, OSError):
        return False


def two_node_settings(settings) -> None:
    """Regions a (the manager's node) and b (the second node)."""
    settings.QM_SWARM_NODE_ENGINES = {SECOND_NODE: SECOND_NODE_ENGINE}
    settings.QM_REGIONS = {"a": "Region A", "b": "Region B"}


@pytest.fixture(params=["process", "docker", "swarm"])
def runtime(request, settings, tmp_path):
    """Each instance test runs on every backend: the engine as a subprocess, containers on the real
    Docker engine (with the engine image built by engine/build-image.sh), and services on a one-node
    swarm of that engine (deploy/scripts/swarm-up.sh). `swarm-node2`, asked for by the two-node tests,
    places instances on the second node (deploy/scripts/second-node.sh). `memory`, asked for by name,
    keeps instances in the test's memory (no engine: for the portal's own logic, in milliseconds).
    Everything a test made is removed after it."""
    if request.param == "docker":
        require_service(docker_engine_answers(), "no Docker engine answers (deploy/scripts/docker-up.sh starts one)")
    if request.param.startswith("swarm"):
        require_service(
            docker_engine_answers(swarm=True), "this Docker engine is not a swarm manager (deploy/scripts/swarm-up.sh)"
        )
    if request.param == "swarm-node2":
        require_service(second_node_available(), "no second swarm node (deploy/scripts/second-node.sh up)")
        two_node_settings(settings)
        settings.QM_DEFAULT_REGION = "b"
    settings.QM_RUNTIME_BACKEND = request.param.partition("-")[0]
    # Containers of this test process only: others sharing the Docker engine are not its orphans.
    settings.QM_RUNTIME_SCOPE = f"tests-{os.getpid()}"
    settings.QM_PROCESS_ROOT = tmp_path / "instances"
    settings.QM_PROVISION_TIMEOUT_SECONDS = 30
    settings.QM_STOP_TIMEOUT_SECONDS = 5
    get_backend.cache_clear()
    backend = get_backend()
    yield backend
    if os.environ.get("QM_KEEP_TEST_INSTANCES"):
        return
    for instance_id in backend.list_all():
        backend.remove(instance_id, keep_data=False)
    get_backend.cache_clear()


@pytest.fixture
def customer(user, subscribe):
    subscribe(user, "professional")
    return user


@pytest.fixture
def customer_client(customer, runtime) -> APIClient:
    _, raw = api_token_create(user=customer)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def create_instance(customer_client):
    def _create(plan: str = "professional", **query):
        suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
        response = customer_client.post(f"/api/saas/instances/create{suffix}", {"plan": plan}, format="json")
        assert response.status_code == 201, response.content
        return response.json()

    return _create


def kill_engine(backend, instance_id: str) -> None:
    """Kill the engine the way a crash would (SIGKILL), on whichever backend runs it."""
    import json
    import signal
    import time
    from pathlib import Path

    if backend.name == "docker":
        backend.client.containers.get(backend.container_name(instance_id)).kill()
    elif backend.name == "swarm":
        container = backend.task_container(instance_id)
        assert container is not None, backend.status(instance_id)
        container.kill()
    elif backend.name == "memory":
        backend.crash(instance_id, exit_code=137)
    else:
        state = json.loads((backend.root / instance_id / "state.json").read_text())
        supervisor = state["pid"]
        children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
        os.kill(int(children[0]), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while backend.status(instance_id).state.value == "running" and time.monotonic() < deadline:
        time.sleep(0.05)


def running_rows(owner, count: int, *, prefix: str) -> list:
    """`count` instance rows said to be running, with no engine behind them (for query counts)."""
    from instances.models import Instance

    plan = owner.subscription.plan
    return Instance.objects.bulk_create(
        Instance(
            instance_id=f"qm-{prefix}{n:05d}-1700000000",
            slug=f"{prefix}{n:05d}",
            owner=owner,
            plan=plan,
            status="running",
            image="x",
            proxy_secret_encrypted="x",
        )
        for n in range(count)
    )
