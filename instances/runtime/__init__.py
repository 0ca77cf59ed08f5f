"""Runtime backends: where instances actually run (process, docker, swarm; memory for tests). One
interface (base.py), chosen by settings."""

from __future__ import annotations

from functools import cache

from .base import RuntimeBackend


@cache
def get_backend() -> RuntimeBackend:
    from django.conf import settings

    if settings.QM_RUNTIME_BACKEND == "process":
        from .process import ProcessBackend

        return ProcessBackend(root=settings.QM_PROCESS_ROOT, keys_root=settings.QM_RUN_KEYS_DIR or None)
    if settings.QM_RUNTIME_BACKEND == "docker":
        from .docker import DockerBackend

        return DockerBackend(
            network=settings.QM_DOCKER_NETWORK,
            scope=settings.QM_RUNTIME_SCOPE,
            keys_root=settings.QM_RUN_KEYS_DIR or None,
        )
    if settings.QM_RUNTIME_BACKEND == "swarm":
        from .swarm import SwarmBackend

        return SwarmBackend(
            network=settings.QM_DOCKER_NETWORK,
            stop_timeout=settings.QM_STOP_TIMEOUT_SECONDS,
            volume_driver=settings.QM_SWARM_VOLUME_DRIVER,
            volume_options=settings.QM_SWARM_VOLUME_OPTIONS,
            constraints=settings.QM_SWARM_CONSTRAINTS,
            node_engines=settings.QM_SWARM_NODE_ENGINES,
        )
    if settings.QM_RUNTIME_BACKEND == "memory":
        from .memory import MemoryBackend

        return MemoryBackend()
    raise ValueError(
        f"QM_RUNTIME_BACKEND={settings.QM_RUNTIME_BACKEND!r}: use 'process', 'docker', 'swarm' or 'memory' (tests)"
    )
