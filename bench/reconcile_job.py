"""Run inside a Django process by bench_reconcile: one reconcile pass, then one metrics collection,
over N instances whose runtime listing comes from the docker or the swarm backend, with Docker's
API answered in its real JSON shape (10,000 containers or services cannot be started on this
machine). Prints JSON figures."""

from __future__ import annotations

import json
import sys
import time

import docker
from django.conf import settings
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from prometheus_client import generate_latest

from accounts.models import User
from billing.selectors import plan_get
from instances.models import Instance
from instances.runtime.docker import LABEL, DockerBackend
from instances.runtime.swarm import SwarmBackend
from instances.services.reconcile import reconcile_pass
from quantmesh.metrics import REGISTRY, targets_view

CRASHED_EVERY = 50  # every 50th engine has crashed


class DockerListingApi:
    """GET /containers/json for our containers: all the docker backend's list_all calls."""

    def __init__(self, ids: list[str]):
        self.calls = 0
        self.summaries = [
            {
                "Id": f"{n:064x}",
                "Names": [f"/quantmesh-{instance_id}"],
                "Image": "quantmesh/engine:latest",
                "Command": "python -m quantmesh_engine",
                "Created": 1700000000,
                "State": "exited" if n % CRASHED_EVERY == 0 else "running",
                "Status": "Exited (137) 5 seconds ago" if n % CRASHED_EVERY == 0 else "Up 3 hours (healthy)",
                "Labels": {LABEL: instance_id, "quantmesh.owner": "1", "quantmesh.port": str(20000 + n % 40000)},
                "HostConfig": {"NetworkMode": "host"},
                "Mounts": [],
            }
            for n, instance_id in enumerate(ids)
        ]

    def containers(self, **kwargs):
        self.calls += 1
        return self.summaries


def _task(service_id: str, n: int, k: int, state: str, desired: str, exit_code: int | None) -> dict:
    status = {"Timestamp": f"2026-11-25T0{k}:00:00.123456789Z", "State": state, "Message": state}
    status["ContainerStatus"] = {"ContainerID": f"{n:060x}{k:04x}", "PID": 0 if exit_code is not None else 4242}
    if exit_code is not None:
        status["ContainerStatus"]["ExitCode"] = exit_code
        status["Err"] = f"task: non-zero exit ({exit_code})"
    return {
        "ID": f"t{n:08d}{k}",
        "Version": {"Index": 100 + k},
        "CreatedAt": f"2026-11-25T0{k}:00:00.000000001Z",
        "UpdatedAt": f"2026-11-25T0{k}:00:00.123456789Z",
        "Labels": {},
        "Spec": {"ContainerSpec": {"Image": "quantmesh/engine:latest"}, "ForceUpdate": k},
        "ServiceID": service_id,
        "Slot": 1,
        "NodeID": NODES[n % 2],
        "Status": status,
        "DesiredState": desired,
    }


NODES = ["node1", "node2"]  # instances spread over two nodes, each pinned to the node of its data


def _node(node_id: str) -> dict:
    return {
        "ID": node_id,
        "Description": {"Hostname": node_id},
        "Spec": {"Role": "worker", "Availability": "active", "Labels": {"quantmesh.region": node_id}},
        "Status": {"State": "ready", "Addr": "198.19.250.2"},
    }


class SwarmListingApi:
    """GET /services (our label), GET /tasks (the whole swarm) and GET /nodes: all the swarm
    backend's list_all calls. Each service keeps a history of two earlier tasks, as swarm's task
    history does."""

    def __init__(self, ids: list[str]):
        self.calls = 0
        self.service_list, self.task_list = [], []
        for n, instance_id in enumerate(ids):
            service_id = f"s{n:024d}"
            self.service_list.append(
                {
                    "ID": service_id,
                    "Version": {"Index": 99},
                    "CreatedAt": "2026-11-25T00:00:00.000000001Z",
                    "UpdatedAt": "2026-11-25T02:00:00.000000001Z",
                    "Spec": {
                        "Name": f"quantmesh-{instance_id}",
                        "Labels": {LABEL: instance_id, "quantmesh.owner": "1", "quantmesh.port": "20000"},
                        "TaskTemplate": {
                            "ContainerSpec": {"Image": "quantmesh/engine:latest"},
                            "Placement": {"Constraints": [f"node.id=={NODES[n % 2]}"]},
                        },
                        "Mode": {"Replicated": {"Replicas": 1}},
                    },
                }
            )
            self.task_list += [
                _task(service_id, n, 0, "shutdown", "shutdown", 0),
                _task(service_id, n, 1, "failed", "shutdown", 137),
                _task(
                    service_id,
                    n,
                    2,
                    *(("failed", "shutdown", 137) if n % CRASHED_EVERY == 0 else ("running", "running", None)),
                ),
            ]

    def services(self, **kwargs):
        self.calls += 1
        return self.service_list

    def tasks(self, **kwargs):
        self.calls += 1
        return self.task_list

    def nodes(self, **kwargs):
        self.calls += 1
        return [_node(node_id) for node_id in NODES]


def backend_for(name: str, ids: list[str]):
    client = docker.DockerClient.__new__(docker.DockerClient)
    if name == "docker":
        client.api = DockerListingApi(ids)
        return DockerBackend(network="host", client=client), client.api
    client.api = SwarmListingApi(ids)
    return SwarmBackend(network="host", client=client), client.api


def main(count: int, backend_name: str) -> None:
    owner, _ = User.objects.get_or_create(email="reconcile-bench@example.com")
    plan = plan_get(code="enterprise")
    Instance.objects.all().delete()
    ids = [f"qm-{n:06d}-1700000000" for n in range(count)]
    Instance.objects.bulk_create(
        [
            Instance(
                instance_id=instance_id,
                slug=f"{n:06d}",
                owner=owner,
                plan=plan,
                status="running",
                healthy=True,
                image="quantmesh/engine:latest",
                proxy_secret_encrypted="x",
            )
            for n, instance_id in enumerate(ids)
        ],
        batch_size=2000,
    )
    backend, api = backend_for(backend_name, ids)

    settings.QM_RESTART_BACKOFF_SECONDS = 3600  # decide only; no converges in the timed pass
    settings.QM_METRICS_TOKEN = "bench-metrics-token"  # noqa: S105 (the endpoint refuses while it is unset)
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        report = reconcile_pass(backend=backend)
    reconcile_seconds = time.perf_counter() - started
    # Metrics collection: the platform's /metrics and Prometheus's discovery of every engine.
    started = time.perf_counter()
    exposition = generate_latest(REGISTRY)
    scrape = RequestFactory().get("/internal/prometheus/targets", HTTP_AUTHORIZATION="Bearer bench-metrics-token")
    targets = json.loads(targets_view(scrape).content)
    metrics_seconds = time.perf_counter() - started
    assert len(targets) == count and b"quantmesh_instances" in exposition
    print(
        json.dumps(
            {
                "backend": backend_name,
                "count": count,
                "seconds": reconcile_seconds,
                "metrics_seconds": metrics_seconds,
                "queries": len(queries),
                "crashed": report.crashed,
                "listing_calls": api.calls,
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
