"""The swarm backend on two nodes (the manager's engine and deploy/scripts/second-node.sh's):
- reconcile + metrics collection over 2,000 instances spread on the two nodes (the swarm's listing
  in Docker's JSON shape: 2,000 real services cannot run on this machine);
- a sample of real services, half on each node: one listing of the real swarm, and the statistics
  of every sample instance read from the engine of its node;
- create → running (the engine answers /healthz) p50 and p95 on each node, side by side.
Needs the second node up (`bash deploy/scripts/second-node.sh up`)."""

from __future__ import annotations

import secrets
import time
import urllib.request

import yaml
from cryptography.fernet import Fernet

from bench.bench_reconcile import bench_env, figures
from bench.common import Result, median, percentile
from instances.runtime.base import BackendError, InstanceSpec
from instances.runtime.swarm import SwarmBackend

SIZE = 2000
SAMPLE_PER_NODE = 5
CREATES_PER_NODE = 8
NODE_ENGINES = {"qm-node2": "unix:///run/qm-node2/docker.sock"}  # deploy/scripts/second-node.sh
REGIONS = {"a": "manager's node", "b": "second node"}


def _backend():
    return SwarmBackend(network="host", stop_timeout=5, node_engines=NODE_ENGINES)


def _spec(instance_id: str, region: str):
    # By keyword: positionally, the region landed in run_keys once that field was added before it, so
    # every engine started without its keys and never answered (the benchmark failed on both trees).
    platform = {
        "instance_id": instance_id,
        "owner": 1,
        "max_trading_pairs": 1,
        "paper_only": True,
        "console_url": f"http://127.0.0.1/instances/{instance_id}",
    }
    keys = {"proxy_secret": secrets.token_hex(16), "secrets_key": Fernet.generate_key().decode()}
    return InstanceSpec(
        instance_id=instance_id,
        owner_id=1,
        image="quantmesh/engine:latest",
        cpu_limit=1.0,
        memory_limit_mb=1024,
        pids_limit=256,
        files={"platform.yaml": yaml.safe_dump(platform).encode()},
        run_keys=yaml.safe_dump(keys).encode(),
        region=region,
    )


def _healthy(backend, instance_id: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        if backend.status(instance_id).state.value == "running":
            host, port = backend.endpoint(instance_id)
            try:
                with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=2) as reply:  # noqa: S310
                    if reply.status == 200:
                        return
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"{instance_id} did not answer /healthz in time")


def _create_to_running(backend, region: str, made: list[str]) -> list[float]:
    durations = []
    for n in range(CREATES_PER_NODE):
        instance_id = f"qm-bn{region}{n:03d}-{int(time.time())}"
        made.append(instance_id)
        started = time.perf_counter()
        backend.create(_spec(instance_id, region))
        backend.start(instance_id)
        _healthy(backend, instance_id, time.monotonic() + 60)
        durations.append(time.perf_counter() - started)
    return durations


def _real_sample(backend, made: list[str]) -> list[Result]:
    sample = [i for i in made if i.startswith("qm-bna")][:SAMPLE_PER_NODE]
    sample += [i for i in made if i.startswith("qm-bnb")][:SAMPLE_PER_NODE]
    listings, stats, missed = [], [], 0
    for _ in range(5):
        started = time.perf_counter()
        listed = backend.list_all()
        listings.append(time.perf_counter() - started)
        missed += sum(1 for i in sample if i not in listed or listed[i].state.value != "running")
        started = time.perf_counter()
        for instance_id in sample:
            try:
                backend.stats(instance_id)
            except BackendError:  # on this shared machine, another engineer's clean-up may remove it
                missed += 1
        stats.append(time.perf_counter() - started)
    return [
        Result(f"real swarm listing (3 calls, {len(made)} services on 2 nodes)", median(listings) * 1000, "ms"),
        Result(f"stats of {len(sample)} real instances from their nodes' engines", median(stats) * 1000, "ms"),
        Result("sample instances missing from a listing or statistics (5 rounds)", missed, "count", "0"),
    ]


def run() -> list[Result]:
    results = _real_services()
    listed = figures(bench_env(), SIZE, "swarm")
    return results + [
        Result(f"two nodes: reconcile + metrics, {SIZE} instances", listed["seconds"] + listed["metrics_seconds"], "s"),
        Result(f"two nodes: reconcile pass alone, {SIZE} instances", listed["seconds"], "s"),
        Result(f"two nodes: reconcile SQL queries, {SIZE} instances", listed["queries"], "count", "constant"),
    ]


def _real_services() -> list[Result]:
    results = []
    backend, made = _backend(), []
    try:
        on_manager = _create_to_running(backend, "a", made)
        on_second = _create_to_running(backend, "b", made)
        results += [
            Result("create→running p50, manager's node (region a)", percentile(on_manager, 50), "s"),
            Result("create→running p50, second node (region b)", percentile(on_second, 50), "s"),
            Result("create→running p95, manager's node (region a)", percentile(on_manager, 95), "s"),
            Result("create→running p95, second node (region b)", percentile(on_second, 95), "s"),
        ]
        results += _real_sample(backend, made)
    finally:
        for instance_id in made:
            backend.remove(instance_id, keep_data=False)
    return results
