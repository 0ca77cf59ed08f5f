"""Reconcile and metrics collection over 2,500 / 5,000 / 10,000 instances, with the docker and the
swarm backend's listing of that many containers or services, measured side by side. Targets: one
reconcile pass plus one metrics collection ≤ 5 s at 10,000, linear growth, a constant number of
SQL queries. Alerts and converges go to the task queue (in memory here), as in production."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

from bench.common import Result
from bench.portal_server import ROOT

SIZES = [2500, 5000, 10000]
BACKENDS = ["docker", "swarm"]
REPEATS = 3  # at 10,000: the median of three runs (the machine is shared and noisy)


def figures(env: dict, size: int, backend: str) -> dict:
    code = f"import django; django.setup()\nfrom bench.reconcile_job import main\nmain({size}, {backend!r})"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_env() -> dict:
    """The environment of a reconcile job process, with its database copied from the migrated template."""
    workdir = tempfile.mkdtemp(prefix="qm-reconcile-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "quantmesh.settings.base",
        "DEBUG": "0",
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{workdir}/bench.sqlite3"),
        "LOG_LEVEL": "WARNING",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CELERY_BROKER_URL": "memory://",
    }
    subprocess.run([sys.executable, "manage.py", "migrate_from_template", "-v0"], env=env, cwd=ROOT, check=True)
    return env


def run() -> list[Result]:
    env = bench_env()
    results = []
    for backend in BACKENDS:
        by_size = {}
        for size in SIZES:
            runs = [figures(env, size, backend) for _ in range(REPEATS if size == SIZES[-1] else 1)]
            by_size[size] = {
                key: statistics.median(r[key] for r in runs) for key in ("seconds", "metrics_seconds", "queries")
            }
        for size, f in by_size.items():
            total = f["seconds"] + f["metrics_seconds"]
            target = "<= 5 s" if size == SIZES[-1] else ""
            results.append(Result(f"{backend}: reconcile + metrics, {size} instances", total, "s", target))
            results.append(Result(f"{backend}: reconcile pass alone, {size} instances", f["seconds"], "s"))
            results.append(
                Result(f"{backend}: reconcile SQL queries, {size} instances", f["queries"], "count", "constant")
            )
        ratio = by_size[SIZES[-1]]["seconds"] / by_size[SIZES[0]]["seconds"]
        results.append(Result(f"{backend}: reconcile 10k/2.5k time ratio (linear = 4)", ratio, "ratio", "~4"))
    return results
