"""The runtime contract: what the portal relies on from every backend, checked on each of them
through the public interface only. The memory backend keeps the same contract, so tests of the
portal's logic may run on it in milliseconds and still mean what they say on the real backends."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import replace

import pytest
import yaml
from cryptography.fernet import Fernet
from django.conf import settings

from instances.runtime.base import BackendError, InstanceSpec, RuntimeState
from tests.waiting import wait_for

pytestmark = pytest.mark.parametrize("runtime", ["memory", "process", "docker", "swarm"], indirect=True)


def _spec() -> InstanceSpec:
    instance_id = f"qm-ct{uuid.uuid4().hex[:6]}-1700000000"
    platform = {
        "instance_id": instance_id,
        "owner": 1,
        "max_trading_pairs": 1,
        "paper_only": True,
        "console_url": f"http://127.0.0.1/instances/{instance_id}",
    }
    keys = {"proxy_secret": uuid.uuid4().hex, "secrets_key": Fernet.generate_key().decode()}
    return InstanceSpec(
        instance_id=instance_id,
        owner_id=1,
        image=settings.QM_ENGINE_IMAGE,
        cpu_limit=1.0,
        memory_limit_mb=512,
        pids_limit=256,
        files={"platform.yaml": yaml.safe_dump(platform).encode()},
        run_keys=yaml.safe_dump(keys).encode(),
    )


def _answers(runtime, instance_id: str) -> int | None:
    """The HTTP status the engine's /healthz gives at the unit's endpoint; None when nothing answers."""
    host, port = runtime.endpoint(instance_id)
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=1) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def _running(runtime, spec: InstanceSpec) -> str:
    """Create and start `spec`'s unit; its id once the engine answers at its endpoint."""
    runtime.create(spec)
    runtime.start(spec.instance_id)
    wait_for(lambda: _answers(runtime, spec.instance_id), seconds=60, what="the engine answering /healthz")
    assert runtime.status(spec.instance_id).state == RuntimeState.RUNNING
    return spec.instance_id


def test_create_makes_a_unit_not_started_that_holds_its_files(runtime):
    spec = _spec()
    runtime.create(spec)
    assert runtime.status(spec.instance_id).state == RuntimeState.CREATED
    assert runtime.list_all()[spec.instance_id].state == RuntimeState.CREATED
    assert runtime.read_file(spec.instance_id, "platform.yaml") == spec.files["platform.yaml"]
    assert runtime.read_file(spec.instance_id, "no-such-file") is None


def test_create_again_keeps_the_unit_and_rewrites_its_files(runtime):
    spec = _spec()
    runtime.create(spec)
    endpoint = runtime.endpoint(spec.instance_id)
    runtime.create(replace(spec, files={"platform.yaml": b"instance_id: rewritten\n"}))
    assert runtime.endpoint(spec.instance_id) == endpoint
    assert runtime.read_file(spec.instance_id, "platform.yaml") == b"instance_id: rewritten\n"
    assert [i for i in runtime.list_all() if i == spec.instance_id] == [spec.instance_id]


def test_write_files_changes_only_the_files_running_or_stopped(runtime):
    instance_id = _running(runtime, _spec())
    started = runtime.status(instance_id).started_at
    runtime.write_files(instance_id, {"notes.txt": b"while running"})
    assert runtime.read_file(instance_id, "notes.txt") == b"while running"
    status = runtime.status(instance_id)
    assert status.state == RuntimeState.RUNNING and status.started_at == started  # no restart
    runtime.stop(instance_id, timeout=5)
    runtime.write_files(instance_id, {"notes.txt": b"while stopped"})
    assert runtime.read_file(instance_id, "notes.txt") == b"while stopped"
    assert runtime.status(instance_id).state == RuntimeState.EXITED


def test_start_stop_restart_and_remove(runtime):
    instance_id = _running(runtime, _spec())
    runtime.stop(instance_id, timeout=5)
    stopped = runtime.status(instance_id)
    assert stopped.state == RuntimeState.EXITED and stopped.exit_code == 0  # SIGTERM: a clean stop
    assert runtime.list_all()[instance_id].state == RuntimeState.EXITED
    assert _answers(runtime, instance_id) is None
    runtime.stop(instance_id, timeout=5)  # stopping a stopped one is a no-op
    runtime.start(instance_id)
    first = wait_for(lambda: _answers(runtime, instance_id) and runtime.status(instance_id), seconds=60)
    assert first.state == RuntimeState.RUNNING
    runtime.restart(instance_id)
    again = wait_for(lambda: _answers(runtime, instance_id) and runtime.status(instance_id), seconds=60)
    assert again.state == RuntimeState.RUNNING and again.started_at > first.started_at
    runtime.remove(instance_id)
    assert runtime.status(instance_id).state == RuntimeState.MISSING
    assert instance_id not in runtime.list_all()
    runtime.remove(instance_id)  # removing a missing one is a no-op


def test_logs_and_live_logs_until_the_engine_stops(runtime):
    instance_id = _running(runtime, _spec())
    wait_for(lambda: any("engine started" in line for line in runtime.logs(instance_id, tail=50)), seconds=10)
    followed: list[str] = []
    follower = threading.Thread(target=lambda: followed.extend(runtime.follow_logs(instance_id)), daemon=True)
    follower.start()
    wait_for(lambda: runtime.status(instance_id).state == RuntimeState.RUNNING)
    runtime.stop(instance_id, timeout=5)
    follower.join(timeout=20)
    assert not follower.is_alive()  # the stream ends with the engine
    assert any("engine stopped" in line for line in followed), followed
    assert any("engine stopped" in line for line in runtime.logs(instance_id, tail=50))


def test_stats_against_limits_changed_in_place(runtime):
    instance_id = _running(runtime, _spec())
    started = runtime.status(instance_id).started_at
    before = runtime.stats(instance_id)
    assert (before.cpu_limit, before.memory_limit_mb) == (1.0, 512)
    assert 0 <= before.cpu_usage <= 1 and 0 <= before.memory_usage <= 1
    runtime.update_limits(instance_id, cpu_limit=1.5, memory_limit_mb=768)
    after = runtime.stats(instance_id)
    assert (after.cpu_limit, after.memory_limit_mb) == (1.5, 768)
    assert runtime.status(instance_id).started_at == started  # no restart
    runtime.stop(instance_id, timeout=5)
    with pytest.raises(BackendError):
        runtime.stats(instance_id)


def test_remove_keeps_the_data_unless_told_otherwise(runtime):
    spec = _spec()
    runtime.create(spec)
    runtime.write_files(spec.instance_id, {"notes.txt": b"kept"})
    runtime.remove(spec.instance_id, keep_data=True)
    assert runtime.status(spec.instance_id).state == RuntimeState.MISSING
    runtime.create(spec)
    assert runtime.read_file(spec.instance_id, "notes.txt") == b"kept"
    runtime.remove(spec.instance_id, keep_data=False)
    runtime.create(spec)
    assert runtime.read_file(spec.instance_id, "notes.txt") is None


def test_an_instance_without_a_unit_is_missing_and_refused(runtime):
    instance_id = _spec().instance_id
    assert runtime.status(instance_id).state == RuntimeState.MISSING
    assert instance_id not in runtime.list_all()
    assert runtime.logs(instance_id, tail=10) == []
    runtime.stop(instance_id, timeout=5)
    runtime.remove(instance_id, keep_data=False)
    for refused in (
        lambda: runtime.start(instance_id),
        lambda: runtime.restart(instance_id),
        lambda: runtime.stats(instance_id),
        lambda: runtime.endpoint(instance_id),
        lambda: runtime.update_limits(instance_id, cpu_limit=1.0, memory_limit_mb=512),
        lambda: runtime.write_files(instance_id, {"notes.txt": b"nowhere"}),
    ):
        with pytest.raises(BackendError):
            refused()
