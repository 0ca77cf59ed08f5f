"""The Docker engine restarts (an upgrade, a host reboot) with instances running: meanwhile the API
answers 503 where it needs Docker; afterwards reconcile brings every instance back to its desired
state by itself, running ones running and stopped ones stopped, with their data."""

from __future__ import annotations

import time

import pytest

from instances.models import Instance
from instances.runtime.swarm import swarm_available
from instances.services.reconcile import reconcile_pass
from tests.db import committing_db

from .services import restart_dockerd

pytestmark = [committing_db, pytest.mark.parametrize("runtime", ["docker"], indirect=True)]


def test_instances_return_to_their_desired_state_after_dockerd_restarts(
    runtime, create_instance, customer_client, settings
):
    settings.QM_RESTART_BACKOFF_SECONDS = 0
    running = create_instance("personal")["instance_id"]
    stopped = create_instance("personal")["instance_id"]
    assert customer_client.post(f"/api/saas/instances/{stopped}/stop").json()["status"] == "stopped"
    runtime.write_files(running, {"notes.txt": b"kept"})
    answers = {}

    def while_down():
        response = customer_client.get(f"/api/saas/instances/{running}/logs?lines=5")
        answers["logs"] = (response.status_code, response.json()["error"]["code"], response.headers.get("Retry-After"))

    restart_dockerd(while_down)
    try:
        assert answers["logs"] == (503, "service_unavailable", "5")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            reconcile_pass()  # what beat runs every 15 s
            if Instance.objects.get(instance_id=running).status == "running":
                break
            time.sleep(0.5)
        instance = Instance.objects.get(instance_id=running)
        assert instance.status == "running" and runtime.status(running).state.value == "running"
        assert instance.events.filter(kind="crashed").exists()  # recorded, with the reason
        assert Instance.objects.get(instance_id=stopped).status == "stopped"
        assert runtime.status(stopped).state.value == "exited"
        assert runtime.read_file(running, "notes.txt") == b"kept"
        assert customer_client.get(f"/api/saas/instances/{running}/logs?lines=5").status_code == 200
    finally:
        # The rest of the run needs the swarm back too (it rejoins by itself after a restart).
        deadline = time.monotonic() + 60
        while not swarm_available() and time.monotonic() < deadline:
            time.sleep(0.5)
