"""What an integrator meets: a real portal (daphne) whose instances run for real (the `process`
backend), a customer with a password, and nothing else. Used by the generated-client and CLI tests."""

from __future__ import annotations

import pytest

from instances.runtime import get_backend

from .live_server import live_portal


@pytest.fixture
def integrator_portal(settings, tmp_path, user):
    """Yield the portal's base URL; `user` (password tests.factories.DEFAULT_PASSWORD) has no plan."""
    settings.QM_RUNTIME_BACKEND = "process"
    settings.QM_PROCESS_ROOT = tmp_path / "instances"
    settings.QM_PROVISION_TIMEOUT_SECONDS = 30
    get_backend.cache_clear()
    try:
        with live_portal(QM_INSTANCE_URL_TEMPLATE="http://instance-{slug}.{domain}", QM_STOP_TIMEOUT_SECONDS="5") as (
            base,
            _,
        ):
            yield base
    finally:
        backend = get_backend()
        for instance_id in backend.list_all():
            backend.remove(instance_id, keep_data=False)
        get_backend.cache_clear()
