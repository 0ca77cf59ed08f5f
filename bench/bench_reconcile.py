"""Reconcile: one pass over 2,500 / 5,000 / 10,000 instances (target ≤ 5 s at 10,000, linear growth,
a constant number of SQL queries), with the docker backend's listing of that many containers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from bench.common import Result
from bench.portal_server import ROOT

SIZES = [2500, 5000, 10000]


def run() -> list[Result]:
    workdir = tempfile.mkdtemp(prefix="qm-reconcile-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "quantmesh.settings.base",
        "DEBUG": "0",
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{workdir}/bench.sqlite3"),
        "LOG_LEVEL": "WARNING",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True)
    figures = []
    for size in SIZES:
        code = f"import django; django.setup()\nfrom bench.reconcile_job import main\nmain({size})"
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
        figures.append(json.loads(out.strip().splitlines()[-1]))
    results = []
    for f in figures:
        target = "<= 5 s" if f["count"] == 10000 else ""
        results.append(Result(f"reconcile pass, {f['count']} instances", f["seconds"], "s", target))
        results.append(Result(f"reconcile SQL queries, {f['count']} instances", f["queries"], "count", "constant"))
    results.append(
        Result(
            "reconcile 10k/2.5k time ratio (linear = 4)", figures[-1]["seconds"] / figures[0]["seconds"], "ratio", "~4"
        )
    )
    return results
