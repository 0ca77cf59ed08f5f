"""The instance's disk fills up while it trades: the engine pauses trading and says why (without
crashing or damaging its database), and resumes by itself once there is room again."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest

from instances import engine_client
from instances.models import Instance
from instances.services.reconcile import reconcile_pass
from tests.conftest import require_service
from tests.db import committing_db
from tests.waiting import wait_for

pytestmark = [committing_db, pytest.mark.parametrize("runtime", ["process"], indirect=True)]
DISK_MB = 8


def engine_status(runtime, instance_id: str) -> dict:
    reply = engine_client.engine_request(Instance.objects.get(instance_id=instance_id), "/api/status", backend=runtime)
    return json.loads(reply.body) if reply and reply.status == 200 else {}


@pytest.fixture
def small_disk(runtime, create_instance, customer_client):
    """A stopped instance whose data directory is moved onto an 8 MB filesystem of its own."""
    instance_id = create_instance("personal")["instance_id"]
    assert customer_client.post(f"/api/saas/instances/{instance_id}/stop").json()["status"] == "stopped"
    data = runtime.root / instance_id / "data"
    kept = Path(tempfile.mkdtemp()) / "data"
    shutil.copytree(data, kept)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(data)], check=False)
    require_service(mounted.returncode == 0, "cannot mount a small filesystem here (needs root)")
    shutil.copytree(kept, data, dirs_exist_ok=True)
    yield instance_id, data
    customer_client.post(f"/api/saas/instances/{instance_id}/stop")
    subprocess.run(["umount", str(data)], check=True)


def test_full_disk_pauses_trading_and_it_resumes_by_itself(runtime, small_disk, customer_client):
    instance_id, data = small_disk
    assert customer_client.post(f"/api/saas/instances/{instance_id}/start").json()["status"] == "running"
    started = runtime.status(instance_id).started_at
    wait_for(lambda: engine_status(runtime, instance_id).get("healthy"), 30, "the engine trades")

    with open(data / "filler", "wb") as filler, pytest.raises(OSError, match="No space left"):
        while True:
            filler.write(b"\0" * (1 << 20))
            filler.flush()
    paused = wait_for(
        lambda: (s := engine_status(runtime, instance_id)).get("state") == "error" and s, 30, "trading pauses"
    )
    assert "database or disk is full" in paused["error"] and "trading paused" in paused["error"]
    assert paused["healthy"] is False

    (data / "filler").unlink()
    resumed = wait_for(lambda: (s := engine_status(runtime, instance_id)).get("healthy") and s, 60, "trading resumes")
    assert resumed["state"] == "running" and resumed["error"] is None
    assert runtime.status(instance_id).started_at == started  # the same engine: it never crashed
    assert reconcile_pass().crashed == 0
    assert Instance.objects.get(instance_id=instance_id).status == "running"
    with contextlib.closing(sqlite3.connect(data / "engine.db")) as db:  # a reader beside the engine
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
