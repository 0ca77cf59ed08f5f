"""Runtime backends: where instances actually run. One interface (base.py), chosen by settings."""

from __future__ import annotations

from functools import cache

from .base import RuntimeBackend


@cache
def get_backend() -> RuntimeBackend:
    from django.conf import settings

    if settings.QM_RUNTIME_BACKEND == "process":
        from .process import ProcessBackend

        return ProcessBackend(root=settings.QM_PROCESS_ROOT)
    if settings.QM_RUNTIME_BACKEND == "docker":
        from .docker import DockerBackend

        return DockerBackend(network=settings.QM_DOCKER_NETWORK)
    raise ValueError(f"QM_RUNTIME_BACKEND={settings.QM_RUNTIME_BACKEND!r}: use 'process' or 'docker'")
