"""The process backend's own promises: cgroup limits where the OS allows, detached engines, files."""

from __future__ import annotations

import os
import stat

import pytest

from instances.runtime.cgroups import Cgroup
from tests.db import committing_db

pytestmark = [
    committing_db,
    pytest.mark.parametrize("runtime", ["process"], indirect=True),
]


def test_platform_file_is_private(runtime, create_instance):
    instance_id = create_instance()["instance_id"]
    mode = os.stat(runtime.root / instance_id / "data" / "platform.yaml").st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_cgroup_limits_follow_the_plan_and_update_live(runtime, create_instance):
    if not runtime.use_cgroups:
        pytest.skip("cgroups are not writable here; the backend runs without them")
    instance_id = create_instance("professional")["instance_id"]
    group = Cgroup(instance_id)
    memory_file = "memory.max" if group.v2 else "memory.limit_in_bytes"
    assert int(group.read("memory", memory_file)) == 2048 * 1024 * 1024
    before = runtime.status(instance_id).started_at
    runtime.update_limits(instance_id, cpu_limit=1.0, memory_limit_mb=1024)
    assert int(group.read("memory", memory_file)) == 1024 * 1024 * 1024
    quota = group.read("cpu", "cpu.max").split()[0] if group.v2 else group.read("cpu", "cpu.cfs_quota_us")
    assert int(quota) == 100_000
    assert runtime.status(instance_id).started_at == before  # no restart
    engine_pids = group.read("memory", "cgroup.procs").split()
    assert len(engine_pids) >= 2  # the supervisor and the engine


def test_engine_outlives_a_new_backend_object(runtime, create_instance):
    """A portal restart makes a new backend; it must still see (and stop) the running engine."""
    from instances.runtime.process import ProcessBackend

    instance_id = create_instance()["instance_id"]
    fresh = ProcessBackend(root=runtime.root)
    assert fresh.status(instance_id).state.value == "running"
    fresh.stop(instance_id, timeout=5)
    assert runtime.status(instance_id).state.value == "exited"
    assert runtime.status(instance_id).exit_code == 0  # SIGTERM: a clean stop
