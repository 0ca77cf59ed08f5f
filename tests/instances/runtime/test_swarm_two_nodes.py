"""The swarm backend on two real nodes: the manager's engine (region a) and a second dockerd in its
own network namespace (region b, deploy/scripts/second-node.sh). Instances placed on the second node
by their region go through the whole product: lifecycle, logs, metrics, files, limits, backups, the
instance URL over the per-node engine network; a lost or drained node; migration between regions."""

from __future__ import annotations

import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import docker
import pytest

from alerts.models import Alert
from instances.models import Instance, InstanceEvent
from instances.runtime import get_backend
from instances.runtime.base import RuntimeState
from instances.services.reconcile import reconcile_pass
from tests.backups import test_backups
from tests.db import committing_db
from tests.instances import test_api
from tests.waiting import wait_for

from ..conftest import SECOND_NODE, SECOND_NODE_ENGINE

pytestmark = [committing_db, pytest.mark.parametrize("runtime", ["swarm-node2"], indirect=True)]
SCRIPT = Path(__file__).resolve().parents[3] / "deploy" / "scripts" / "second-node.sh"


@pytest.fixture
def node2():
    client = docker.DockerClient(base_url=SECOND_NODE_ENGINE, timeout=30)
    yield client
    client.close()


def _node_id(runtime, hostname: str) -> str:
    return next(n["ID"] for n in runtime.client.api.nodes() if n["Description"]["Hostname"] == hostname)


def _on_node2(runtime, node2, instance_id: str):
    """The running task's container, asserted to be on the second node's engine and not the manager's."""
    container = runtime.task_container(instance_id)
    assert container is not None
    assert node2.containers.get(container.id).id == container.id
    assert not runtime.client.containers.list(all=True, filters={"id": container.id})
    return container


def test_an_instance_of_region_b_runs_on_the_second_node(runtime, node2, create_instance):
    body = create_instance("professional")
    assert body["region"] == "b" and body["status"] == "running" and body["healthy"] is True
    instance_id = body["instance_id"]
    spec = runtime.client.services.get(runtime.service_name(instance_id)).attrs["Spec"]
    node_id = _node_id(runtime, SECOND_NODE)
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == [
        f"node.id=={node_id}",
        "node.labels.quantmesh.region==b",
    ]
    _on_node2(runtime, node2, instance_id)
    assert node2.volumes.get(runtime.volume_name(instance_id))  # its data is on that node's disk
    # The portal reaches it on the second node's swarm address (through the veth), not on loopback.
    host, port = runtime.endpoint(instance_id)
    assert host == "198.19.250.2" and 20000 <= port < 30000
    args = spec["TaskTemplate"]["ContainerSpec"]["Args"]
    assert args[args.index("--host") + 1] == "198.19.250.2"


def test_lifecycle(create_instance, customer_client, runtime):
    test_api.test_lifecycle_stop_start_restart_delete(create_instance, customer_client, runtime)


def test_logs(create_instance, customer_client):
    test_api.test_logs(create_instance, customer_client)


def test_metrics_against_the_plans_limits(create_instance, customer_client):
    test_api.test_metrics(create_instance, customer_client)


def test_exports_through_the_portal_over_the_nodes_address(create_instance, customer_client):
    test_api.test_exports_through_the_portal(create_instance, customer_client)


def test_backup_and_restore(create_instance, customer_client, runtime):
    test_backups.test_backup_then_change_then_restore_gives_the_exact_data_back(
        create_instance, customer_client, runtime
    )


def test_live_logs_arrive_at_once(runtime, node2, create_instance, customer_client):
    """Read from the node's engine, not swarm's log stream (which lags by seconds): a line reaches
    the follower well within a second of the engine writing it (the line's own timestamp)."""
    instance_id = create_instance("personal")["instance_id"]
    lines: list[tuple[float, str]] = []

    def follow():
        for line in runtime.follow_logs(instance_id):
            lines.append((time.time(), line))
            if "engine stopped" in line:
                return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    time.sleep(0.5)
    customer_client.post(f"/api/saas/instances/{instance_id}/stop")  # the engine logs "engine stopped"
    reader.join(timeout=15)
    received, line = next((at, line) for at, line in lines if "engine stopped" in line)
    written = datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
    assert received - written < 1.0, lines


def test_files_are_read_and_written_on_the_datas_node(runtime, node2, create_instance, customer_client):
    instance_id = create_instance("personal")["instance_id"]
    assert instance_id.encode() in runtime.read_file(instance_id, "platform.yaml")
    customer_client.post(f"/api/saas/instances/{instance_id}/stop")
    runtime.write_files(instance_id, {"notes.txt": b"on node 2"})  # a helper container on node 2
    assert runtime.read_file(instance_id, "notes.txt") == b"on node 2"
    assert customer_client.post(f"/api/saas/instances/{instance_id}/start").json()["status"] == "running"
    assert runtime.read_file(instance_id, "notes.txt") == b"on node 2"
    for client in (runtime.client, node2):
        assert client.containers.list(all=True, filters={"label": "quantmesh.files-for"}) == []


def test_limit_change_applies_in_place_and_survives_a_restart(runtime, node2, create_instance, customer_client):
    instance_id = create_instance("personal")["instance_id"]
    before = _on_node2(runtime, node2, instance_id)
    runtime.update_limits(instance_id, cpu_limit=1.5, memory_limit_mb=1536)
    after = _on_node2(runtime, node2, instance_id)
    assert after.id == before.id  # no restart: the running container's limits changed
    assert after.attrs["HostConfig"]["NanoCpus"] == 1_500_000_000
    assert after.attrs["HostConfig"]["Memory"] == 1536 * 1024**2
    stats = runtime.stats(instance_id)
    assert (stats.cpu_limit, stats.memory_limit_mb) == (1.5, 1536)
    customer_client.post(f"/api/saas/instances/{instance_id}/restart")
    renewed = _on_node2(runtime, node2, instance_id)
    assert renewed.id != before.id and renewed.attrs["HostConfig"]["NanoCpus"] == 1_500_000_000


def _up() -> None:
    subprocess.run(["bash", str(SCRIPT), "up"], check=True, capture_output=True, timeout=180)


def test_a_lost_node_shows_its_instances_unreachable_and_they_come_back(runtime, node2, create_instance, customer):
    instance_id = create_instance("personal")["instance_id"]
    pid = int(Path(f"/run/{SECOND_NODE}/docker.pid").read_text())
    subprocess.run(["kill", str(pid)], check=True)  # the node's engine stops (its containers with it)
    try:
        wait_for(lambda: runtime.status(instance_id).state == RuntimeState.UNREACHABLE, seconds=60)
        reconcile_pass(backend=runtime)
        instance = Instance.objects.get(instance_id=instance_id)
        assert instance.status == Instance.Status.UNREACHABLE
        assert SECOND_NODE in instance.last_failure_reason and "unreachable" in instance.last_failure_reason
        event = InstanceEvent.objects.get(instance=instance, kind="node_unreachable")
        assert SECOND_NODE in event.detail["reason"]
        assert not InstanceEvent.objects.filter(instance=instance, kind="crashed").exists()
        alert = Alert.objects.get(user=customer, instance=instance)
        assert SECOND_NODE in alert.subject
        reconcile_pass(backend=runtime)  # again: nothing restarted, nothing deleted
        assert runtime.client.services.list(filters={"label": f"quantmesh.instance={instance_id}"})
    finally:
        _up()
    get_backend.cache_clear()  # the node's engine client reconnects
    wait_for(lambda: runtime.status(instance_id).state != RuntimeState.UNREACHABLE, seconds=60)
    reconcile_pass(backend=runtime)  # converges it: the node's restart had stopped the engine
    wait_for(lambda: Instance.objects.get(instance_id=instance_id).status == Instance.Status.RUNNING, seconds=60)
    assert node2.volumes.get(runtime.volume_name(instance_id))
    assert InstanceEvent.objects.filter(instance__instance_id=instance_id, kind="running").count() >= 2


def test_a_drained_node_says_the_instance_is_pinned_there(runtime, node2, create_instance):
    instance_id = create_instance("personal")["instance_id"]
    node_id = _node_id(runtime, SECOND_NODE)
    node = runtime.client.nodes.get(node_id)
    node.update({**node.attrs["Spec"], "Availability": "drain"})
    try:
        wait_for(lambda: runtime.status(instance_id).state == RuntimeState.UNREACHABLE, seconds=30)
        reconcile_pass(backend=runtime)
        instance = Instance.objects.get(instance_id=instance_id)
        assert instance.status == Instance.Status.UNREACHABLE
        assert "drained" in instance.last_failure_reason and "pinned" in instance.last_failure_reason
    finally:
        node.reload()
        node.update({**node.attrs["Spec"], "Availability": "active"})
    reconcile_pass(backend=runtime)
    wait_for(lambda: Instance.objects.get(instance_id=instance_id).status == Instance.Status.RUNNING, seconds=60)


def test_migration_moves_data_id_and_url_to_the_other_region(runtime, node2, customer_client):
    created = customer_client.post("/api/saas/instances/create", {"plan": "personal", "region": "a"}, format="json")
    body = created.json()
    instance_id = body["instance_id"]
    assert body["region"] == "a" and body["status"] == "running", body
    assert runtime.client.containers.get(runtime.task_container(instance_id).id)  # on the manager's node
    runtime.write_files(instance_id, {"notes.txt": b"moved with me"})
    platform = runtime.read_file(instance_id, "platform.yaml")
    trades_before = wait_for(  # some paper trades first, so that their history has something to carry
        lambda: (
            (csv := customer_client.get(f"/api/saas/instances/{instance_id}/export/trades").content).count(b"\n") > 1
            and csv
        ),
        seconds=60,
        what="a first paper trade",
    )

    answer = customer_client.post(f"/api/saas/instances/{instance_id}/migrate", {"region": "b"}, format="json")
    assert answer.status_code == 202, answer.content
    moved = customer_client.get(f"/api/saas/instances/{instance_id}").json()
    assert moved["region"] == "b" and moved["migration"] == {} and moved["status"] == "running", moved
    assert moved["url"] == body["url"] and moved["instance_id"] == instance_id
    _on_node2(runtime, node2, instance_id)
    assert runtime.read_file(instance_id, "notes.txt") == b"moved with me"
    assert runtime.read_file(instance_id, "platform.yaml") == platform
    trades_after = customer_client.get(f"/api/saas/instances/{instance_id}/export/trades").content
    assert set(trades_before.splitlines()) <= set(trades_after.splitlines())  # the history came along
    with pytest.raises(docker.errors.NotFound):  # the old copy is gone once the new one runs
        runtime.client.volumes.get(runtime.volume_name(instance_id))
    kinds = set(InstanceEvent.objects.filter(instance__instance_id=instance_id).values_list("kind", flat=True))
    assert {"migration_requested", "migrated"} <= kinds
    assert Instance.objects.get(instance_id=instance_id).backups.filter(kind="before_migration").exists()


def test_a_failed_migration_leaves_the_instance_running_where_it_was(runtime, customer_client, settings):
    body = customer_client.post("/api/saas/instances/create", {"plan": "personal", "region": "a"}, format="json").json()
    instance_id = body["instance_id"]
    runtime.write_files(instance_id, {"notes.txt": b"stays"})
    # The second node's engine cannot be reached by the worker: the copy fails after the stop.
    settings.QM_SWARM_NODE_ENGINES = {}
    get_backend.cache_clear()
    answer = customer_client.post(f"/api/saas/instances/{instance_id}/migrate", {"region": "b"}, format="json")
    assert answer.status_code == 202
    after = customer_client.get(f"/api/saas/instances/{instance_id}").json()
    assert after["region"] == "a" and after["status"] == "running"
    assert after["migration"]["step"] == "failed" and SECOND_NODE in after["migration"]["error"]
    backend = get_backend()
    assert backend.status(instance_id).state == RuntimeState.RUNNING
    assert backend.client.containers.get(backend.task_container(instance_id).id)  # on the manager's node
    assert backend.read_file(instance_id, "notes.txt") == b"stays"
    assert InstanceEvent.objects.filter(instance__instance_id=instance_id, kind="migration_failed").exists()


@pytest.mark.parametrize(
    ("region", "status", "code"),
    [("mars", 400, "unknown_region"), ("a", 409, "already_there")],
)
def test_bad_migrations_are_refused_and_change_nothing(runtime, customer_client, region, status, code):
    body = customer_client.post("/api/saas/instances/create", {"plan": "personal", "region": "a"}, format="json").json()
    answer = customer_client.post(
        f"/api/saas/instances/{body['instance_id']}/migrate", {"region": region}, format="json"
    )
    assert answer.status_code == status and answer.json()["error"]["code"] == code
    assert Instance.objects.get(instance_id=body["instance_id"]).migration == {}


def test_console_creates_in_a_region_and_moves_it(runtime, node2, customer, client):
    client.force_login(customer)
    page = client.get("/instances/new?plan=personal").content.decode()
    assert 'name="region"' in page and "Region B" in page
    created = client.post("/instances/new", {"plan": "personal", "confirm": "1", "region": "a"})
    instance = Instance.objects.get(owner=customer)
    assert created.status_code == 302 and instance.region == "a"
    detail = client.get(f"/instances/{instance.instance_id}").content.decode()
    assert "Runs in region a." in detail and 'action="/instances/' + instance.instance_id + '/migrate"' in detail
    moved = client.post(f"/instances/{instance.instance_id}/migrate", {"region": "b"})
    assert moved.status_code == 302
    instance.refresh_from_db()
    assert instance.region == "b" and instance.migration == {} and instance.status == "running"
    _on_node2(runtime, node2, instance.instance_id)
    assert "Runs in region b." in client.get(f"/instances/{instance.instance_id}").content.decode()
