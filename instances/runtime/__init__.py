"""Runtime backends: where instances actually run (process, docker, swarm; memory for tests). One
interface (base.py), chosen by settings."""

from __future__ import annotations

from functools import cache

from django.conf import settings

from .base import RuntimeBackend
from .docker import DockerBackend
from .memory import MemoryBackend
from .process import ProcessBackend
from .swarm import SwarmBackend


@cache
def get_backend() -> RuntimeBackend:
    if settings.QM_RUNTIME_BACKEND == "process":
        return ProcessBackend(root=settings.QM_PROCESS_ROOT, keys_root=settings.QM_RUN_KEYS_DIR or None)
    if settings.QM_RUNTIME_BACKEND == "docker":
        return DockerBackend(
            network=settings.QM_DOCKER_NETWORK,
            scope=settings.QM_RUNTIME_SCOPE,
            keys_root=settings.QM_RUN_KEYS_DIR or None,
        )
    if settings.QM_RUNTIME_BACKEND == "swarm":
        return SwarmBackend(
            network=settings.QM_DOCKER_NETWORK,
            stop_timeout=settings.QM_STOP_TIMEOUT_SECONDS,
            volume_driver=settings.QM_SWARM_VOLUME_DRIVER,
            volume_options=settings.QM_SWARM_VOLUME_OPTIONS,
            constraints=settings.QM_SWARM_CONSTRAINTS,
            node_engines=settings.QM_SWARM_NODE_ENGINES,
        )
    if settings.QM_RUNTIME_BACKEND == "memory":
        return MemoryBackend()
    raise ValueError(
        f"QM_RUNTIME_BACKEND={settings.QM_RUNTIME_BACKEND!r}: use 'process', 'docker', 'swarm' or 'memory' (tests)"
    )
