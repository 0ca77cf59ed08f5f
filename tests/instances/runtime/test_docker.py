"""What the docker backend asks of the real Docker engine: limits, isolation, labels, files, live updates."""

from __future__ import annotations

import io
import tarfile

import pytest

from instances.models import Instance
from instances.runtime.base import RuntimeState
from instances.runtime.docker import SCOPE_LABEL, DockerBackend
from quantmesh.crypto import decrypt
from tests.db import committing_db

pytestmark = [
    committing_db,
    pytest.mark.parametrize("runtime", ["docker"], indirect=True),
]


def _read_file(container, path: str) -> tuple[bytes, tarfile.TarInfo]:
    stream, _ = container.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        member = archive.getmembers()[0]
        return archive.extractfile(member).read(), member


def test_container_carries_the_plans_limits_and_isolation(runtime, create_instance, customer):
    body = create_instance("professional")
    instance = Instance.objects.get(instance_id=body["instance_id"])
    container = runtime.client.containers.get(runtime.container_name(instance.instance_id))
    host = container.attrs["HostConfig"]
    assert host["NanoCpus"] == 2_000_000_000
    assert host["Memory"] == 2048 * 1024 * 1024
    assert host["MemorySwap"] == host["Memory"]  # no swap beyond the limit
    assert host["PidsLimit"] == instance.plan.pids_limit
    assert host["Init"] is True
    assert host["ReadonlyRootfs"] is True
    assert host["RestartPolicy"]["Name"] == "on-failure"
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
    assert "no-new-privileges" in host["SecurityOpt"]
    assert container.attrs["Config"]["User"] == "10001:10001"
    assert container.labels["quantmesh.instance"] == instance.instance_id
    assert container.labels["quantmesh.owner"] == str(customer.pk)
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounts["/data"]["Name"] == f"qm-data-{instance.instance_id}"

    secret = decrypt(instance.proxy_secret_encrypted)
    inspect_text = str(container.attrs)
    assert secret not in inspect_text  # not in env, labels or command
    content, member = _read_file(container, "/data/platform.yaml")
    assert secret.encode() not in content  # the run keys come from the host's tmpfs, read-only
    assert member.mode & 0o777 == 0o600 and member.uid == 10001
    assert mounts["/run/quantmesh"]["Type"] == "bind" and mounts["/run/quantmesh"]["RW"] is False


def test_limits_change_live_without_restart(runtime, create_instance):
    instance_id = create_instance("personal")["instance_id"]
    container = runtime.client.containers.get(runtime.container_name(instance_id))
    started = container.attrs["State"]["StartedAt"]
    runtime.update_limits(instance_id, cpu_limit=2.0, memory_limit_mb=2048)
    container.reload()
    assert container.attrs["HostConfig"]["NanoCpus"] == 2_000_000_000
    assert container.attrs["HostConfig"]["Memory"] == container.attrs["HostConfig"]["MemorySwap"] == 2048 * 1024**2
    assert container.attrs["State"]["StartedAt"] == started
    runtime.update_limits(instance_id, cpu_limit=1.0, memory_limit_mb=512)
    container.reload()
    assert container.attrs["HostConfig"]["Memory"] == 512 * 1024**2


def test_missing_image_fails_with_a_clear_reason(runtime, customer_client, settings):
    settings.QM_ENGINE_IMAGE = "quantmesh/engine:no-such-tag"
    response = customer_client.post("/api/saas/instances/create", {"plan": "personal"}, format="json")
    body = response.json()
    assert body["status"] == "failed"
    assert "image missing" in body["last_failure_reason"]


def test_listing_is_one_call_with_states(runtime, create_instance, customer_client):
    first = create_instance("personal")["instance_id"]
    second = create_instance("personal")["instance_id"]
    customer_client.post(f"/api/saas/instances/{second}/stop")
    listing = runtime.list_all()
    assert listing[first].state.value == "running"
    assert listing[second].state.value == "exited"


def test_a_scoped_backend_manages_only_its_own_deployments_containers(runtime, create_instance, settings):
    mine = create_instance("personal")["instance_id"]
    container = runtime.client.containers.get(runtime.container_name(mine))
    assert container.labels[SCOPE_LABEL] == settings.QM_RUNTIME_SCOPE
    another_deployment = DockerBackend(network=runtime.network, scope="another-deployment")
    assert mine not in another_deployment.list_all()  # so its reconcile never removes it as an orphan
    assert another_deployment.status(mine).state == RuntimeState.MISSING
    assert runtime.list_all()[mine].state == RuntimeState.RUNNING
