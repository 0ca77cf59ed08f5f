"""What the swarm backend asks of a real (one-node) Docker Swarm: the service's spec, stop = 0
replicas with data kept, the two-call listing, limits, and how task histories read as states."""

from __future__ import annotations

import pytest
import yaml

from instances.models import Instance
from instances.runtime.base import RuntimeState
from instances.runtime.swarm import SwarmBackend, service_status
from quantmesh.crypto import decrypt
from tests.db import committing_db

swarm = pytest.mark.parametrize("runtime", ["swarm"], indirect=True)


def _service(runtime, instance_id: str):
    return runtime.client.services.get(runtime.service_name(instance_id))


@committing_db
@swarm
def test_service_carries_the_plans_limits_placement_and_hardening(runtime, create_instance, customer):
    instance_id = create_instance("professional")["instance_id"]
    instance = Instance.objects.get(instance_id=instance_id)
    spec = _service(runtime, instance_id).attrs["Spec"]
    template = spec["TaskTemplate"]
    assert spec["Mode"] == {"Replicated": {"Replicas": 1}}
    assert spec["Labels"]["quantmesh.instance"] == instance_id
    assert spec["Labels"]["quantmesh.owner"] == str(customer.pk)
    limits, reservations = template["Resources"]["Limits"], template["Resources"]["Reservations"]
    assert limits == {"NanoCPUs": 2_000_000_000, "MemoryBytes": 2048 * 1024**2, "Pids": instance.plan.pids_limit}
    assert reservations == {"NanoCPUs": 500_000_000, "MemoryBytes": 512 * 1024**2}
    assert template["RestartPolicy"]["Condition"] == "none"  # reconcile restarts, with back-off and alerts
    node_id = runtime.client.info()["Swarm"]["NodeID"]
    assert template["Placement"]["Constraints"] == [f"node.id=={node_id}"]  # local volumes pin it to its data
    container = template["ContainerSpec"]
    assert container["User"] == "10001:10001"
    assert container["ReadOnly"] is True and container["Init"] is True
    assert container["CapabilityDrop"] == ["ALL"]
    assert template["LogDriver"] == {"Name": "json-file", "Options": {"max-file": "3", "max-size": "10m"}}
    mounts = {m["Target"]: m for m in container["Mounts"]}
    assert mounts["/data"]["Source"] == f"qm-data-{instance_id}" and mounts["/data"]["Type"] == "volume"
    assert mounts["/tmp"]["Type"] == "tmpfs"

    secret = decrypt(instance.proxy_secret_encrypted)
    running = runtime.task_container(instance_id)
    assert running is not None and running.attrs["HostConfig"]["NanoCpus"] == 2_000_000_000
    assert running.attrs["HostConfig"]["NetworkMode"] == "host"  # on loopback, like the docker backend
    assert secret not in str(spec) and secret not in str(running.attrs)  # not in env, labels or command
    # The engine's secret reaches it as a Docker secret (a tmpfs in the task), never on the volume.
    assert "proxy_secret" not in yaml.safe_load(runtime.read_file(instance_id, "platform.yaml"))
    assert [s["SecretName"] for s in container["Secrets"]] == [f"qm-keys-{instance_id}"]
    assert container["Secrets"][0]["File"]["UID"] == "10001" and container["Secrets"][0]["File"]["Mode"] == 0o400


@committing_db
@swarm
def test_stop_scales_to_zero_and_keeps_the_data(runtime, create_instance, customer_client):
    instance_id = create_instance("personal")["instance_id"]
    runtime.write_files(instance_id, {"notes.txt": b"kept"})
    assert customer_client.post(f"/api/saas/instances/{instance_id}/stop").json()["status"] == "stopped"
    assert _service(runtime, instance_id).attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 0
    assert runtime.task_container(instance_id) is None
    status = runtime.status(instance_id)
    assert status.state == RuntimeState.EXITED and status.exit_code == 0  # SIGTERM: a clean stop
    assert runtime.read_file(instance_id, "notes.txt") == b"kept"  # through a helper container
    assert customer_client.post(f"/api/saas/instances/{instance_id}/start").json()["status"] == "running"
    assert runtime.read_file(instance_id, "notes.txt") == b"kept"  # the same volume, mounted again
    helpers = runtime.client.containers.list(all=True, filters={"label": "quantmesh.files-for"})
    assert helpers == []


@committing_db
@swarm
def test_listing_is_three_calls_with_states(runtime, create_instance, customer_client, monkeypatch):
    first = create_instance("personal")["instance_id"]
    second = create_instance("personal")["instance_id"]
    customer_client.post(f"/api/saas/instances/{second}/stop")
    calls = []

    def counted(name):
        original = getattr(runtime.client.api, name)
        return lambda *args, **kwargs: calls.append(name) or original(*args, **kwargs)

    for name in ("services", "tasks", "nodes"):
        monkeypatch.setattr(runtime.client.api, name, counted(name))
    listing = runtime.list_all()
    assert calls == ["services", "tasks", "nodes"]
    assert listing[first].state == RuntimeState.RUNNING
    assert listing[second].state == RuntimeState.EXITED


@committing_db
@swarm
def test_limit_change_applies_in_place_without_a_restart(runtime, create_instance):
    instance_id = create_instance("personal")["instance_id"]
    before = runtime.task_container(instance_id).id
    runtime.update_limits(instance_id, cpu_limit=1.5, memory_limit_mb=1536)
    after = runtime.task_container(instance_id)
    assert after.id == before  # the same engine, its limits changed live
    assert after.attrs["HostConfig"]["NanoCpus"] == 1_500_000_000
    assert runtime.stats(instance_id).memory_limit_mb == 1536
    runtime.restart(instance_id)  # the service's template took the limits: a new task keeps them
    renewed = runtime.task_container(instance_id)
    assert renewed.id != before and renewed.attrs["HostConfig"]["NanoCpus"] == 1_500_000_000


@committing_db
@swarm
def test_missing_image_fails_with_a_clear_reason(runtime, customer_client, settings):
    settings.QM_ENGINE_IMAGE = "quantmesh/engine:no-such-tag"
    body = customer_client.post("/api/saas/instances/create", {"plan": "personal"}, format="json").json()
    assert body["status"] == "failed"
    assert "image missing" in body["last_failure_reason"]


# --- how task histories read (recorded in the Docker API's shape) ---------------------------------

SERVICE = {
    "ID": "svc1",
    "Spec": {
        "Labels": {"quantmesh.instance": "qm-a"},
        "Mode": {"Replicated": {"Replicas": 1}},
        "TaskTemplate": {"ContainerSpec": {"Image": "quantmesh/engine:latest"}},
    },
}


def _task(n: int, state: str, *, desired: str = "running", exit_code: int | None = None, err: str = "") -> dict:
    status = {"State": state, "Timestamp": f"2026-11-25T10:00:0{n}.5Z", "Err": err}
    if exit_code is not None:
        status["ContainerStatus"] = {"ContainerID": f"c{n}", "ExitCode": exit_code}
    return {"ID": f"t{n}", "CreatedAt": f"2026-11-25T10:00:0{n}.000000001Z", "DesiredState": desired, "Status": status}


@pytest.mark.parametrize(
    ("tasks", "state", "exit_code"),
    [
        ([], RuntimeState.CREATED, None),  # swarm has not made the task yet
        ([_task(1, "preparing")], RuntimeState.CREATED, None),
        ([_task(1, "starting")], RuntimeState.RUNNING, None),
        ([_task(1, "failed", desired="shutdown", exit_code=137)], RuntimeState.EXITED, 137),
        ([_task(1, "failed", exit_code=137), _task(2, "pending")], RuntimeState.CREATED, None),
        ([_task(1, "complete", desired="shutdown", exit_code=0)], RuntimeState.EXITED, 0),
    ],
    ids=["no-task", "preparing", "starting", "crashed", "replacing", "exited-cleanly"],
)
def test_task_history_reads_as_a_runtime_state(tasks, state, exit_code):
    observed = service_status(SERVICE, tasks)
    assert observed.state == state
    assert observed.exit_code == exit_code


def test_a_task_swarm_could_not_place_names_the_missing_image():
    rejected = _task(1, "rejected", desired="shutdown", err="No such image: quantmesh/engine:gone")
    observed = service_status(SERVICE, [rejected])
    assert observed.state == RuntimeState.EXITED
    assert observed.error.startswith("image missing: quantmesh/engine:latest")


def test_a_stopped_service_reports_its_last_exit():
    stopped = {**SERVICE, "Spec": {**SERVICE["Spec"], "Mode": {"Replicated": {"Replicas": 0}}}}
    observed = service_status(stopped, [_task(1, "shutdown", desired="shutdown", exit_code=0)])
    assert (observed.state, observed.exit_code) == (RuntimeState.EXITED, 0)
    assert service_status(stopped, []).state == RuntimeState.CREATED  # never started
    assert service_status({**stopped, "PreviousSpec": {}}, []).state == RuntimeState.EXITED  # history cleared


@pytest.mark.parametrize(
    ("driver", "options", "shared"),
    [
        ("local", {}, False),
        ("local", {"type": "nfs", "o": "addr=nfs.internal,rw", "device": ":/export/qm"}, True),
        ("rexray/efs", {}, True),
    ],
)
def test_only_shared_volumes_let_instances_leave_their_node(driver, options, shared):
    constraints = ["node.role==worker"]
    backend = SwarmBackend(client=object(), volume_driver=driver, volume_options=options, constraints=constraints)
    assert backend.volumes_shared is shared
    placement = backend.placement_constraints("node1", "eu")
    region = "node.labels.quantmesh.region==eu"
    # Shared: swarm may place it on any node of its region; local: pinned to the node of its data.
    assert placement == ([region, *constraints] if shared else ["node.id==node1", region, *constraints])
