"""Run inside a Django process by bench_reconcile: one reconcile pass over N instances whose
runtime listing comes from the docker backend, with Docker's list endpoint answered in its real
JSON shape (10,000 containers cannot be started on this machine). Prints JSON figures."""

from __future__ import annotations

import json
import sys
import time

from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from billing.selectors import plan_get
from instances.models import Instance
from instances.reconcile import reconcile_pass
from instances.runtime.docker import LABEL, DockerBackend


class ListingOnlyApi:
    """Docker's GET /containers/json answer for our containers; nothing else is called by list_all."""

    def __init__(self, summaries):
        self.summaries = summaries
        self.calls = 0

    def containers(self, **kwargs):
        self.calls += 1
        return self.summaries


def summaries_for(ids: list[str]) -> list[dict]:
    rows = []
    for n, instance_id in enumerate(ids):
        running = n % 50 != 0  # every 50th container has crashed
        rows.append(
            {
                "Id": f"{n:064x}",
                "Names": [f"/quantmesh-{instance_id}"],
                "Image": "quantmesh/engine:latest",
                "Command": "python -m quantmesh_engine",
                "Created": 1700000000,
                "State": "running" if running else "exited",
                "Status": "Up 3 hours (healthy)" if running else "Exited (137) 5 seconds ago",
                "Labels": {LABEL: instance_id, "quantmesh.owner": "1", "quantmesh.port": str(20000 + n % 40000)},
                "HostConfig": {"NetworkMode": "host"},
                "Mounts": [],
            }
        )
    return rows


def main(count: int) -> None:
    owner, _ = User.objects.get_or_create(email="reconcile-bench@example.com")
    plan = plan_get(code="enterprise")
    Instance.objects.all().delete()
    ids = [f"qm-{n:06d}-1700000000" for n in range(count)]
    Instance.objects.bulk_create(
        [
            Instance(
                instance_id=i,
                slug=f"{n:06d}",
                owner=owner,
                plan=plan,
                status="running",
                healthy=True,
                image="quantmesh/engine:latest",
                proxy_secret_encrypted="x",
            )
            for n, i in enumerate(ids)
        ],
        batch_size=2000,
    )
    backend = DockerBackend.__new__(DockerBackend)
    DockerBackend.__init__(backend, network="host", client=type("Client", (), {})())
    import docker

    real = docker.DockerClient.__new__(docker.DockerClient)
    real.api = ListingOnlyApi(summaries_for(ids))
    backend.client = real
    from django.conf import settings

    settings.QM_RESTART_BACKOFF_SECONDS = 3600  # decide only; no converges in the timed pass
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        report = reconcile_pass(backend=backend)
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "count": count,
                "seconds": elapsed,
                "queries": len(queries),
                "crashed": report.crashed,
                "listing_calls": real.api.calls,
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]))
