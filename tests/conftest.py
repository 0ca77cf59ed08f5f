"""Shared fixtures. Services (PostgreSQL, Redis, Docker) are used when configured; with
QM_REQUIRE_SERVICES=1 (CI) a missing service fails the run instead of skipping."""

from __future__ import annotations

import os
import subprocess
import time
import warnings
from pathlib import Path

import pyotp
import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts import services as account_services
from billing.selectors import plan_get
from billing.services import plan_catalogue_sync, subscription_grant_local
from instances.runtime.docker import docker_available
from instances.runtime.swarm import swarm_available

from .factories import DEFAULT_PASSWORD, UserFactory

REQUIRE_SERVICES = os.environ.get("QM_REQUIRE_SERVICES") == "1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_service(available: bool, why: str) -> None:
    """Skip a test that needs a missing service, or fail when CI demands every service."""
    if available:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"QM_REQUIRE_SERVICES=1 but {why}")
    pytest.skip(why)


ROOT = Path(__file__).resolve().parent.parent
_engine_restarts = []


def docker_engine_answers(*, swarm: bool = False) -> bool:
    """Whether the Docker engine (and, with `swarm`, its swarm manager) answers. Under CI
    (QM_REQUIRE_SERVICES=1) an engine that stopped answering mid-run is started again, at most three
    times, with a warning: Debian's dockerd 20.10 has crashed in swarmkit (a nil pointer in
    SetServiceTasksRemove, /var/log/dockerd.log), and the one test running then failed, but so did
    every later test that needs Docker."""
    available = swarm_available if swarm else docker_available
    if available() or not REQUIRE_SERVICES or len(_engine_restarts) >= 3:
        return available()
    _engine_restarts.append(time.time())
    warnings.warn("the Docker engine stopped answering during the run: starting it again", stacklevel=2)
    subprocess.run(["bash", str(ROOT / "deploy/scripts/docker-up.sh")], check=False, capture_output=True)
    deadline = time.monotonic() + 60  # the swarm manager comes back by itself with its engine
    while not swarm_available() and time.monotonic() < deadline:
        time.sleep(0.5)
    return available()


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Login throttles live in the cache; each test starts with none.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    # --reuse-db: the database may come from an earlier run, flushed by its committing tests or left
    # half-full by an interrupted one. Start from empty tables plus what migrations put there
    # (content types and the default site by post_migrate, the plans).
    from django.core.management import call_command

    with django_db_blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)
        plan_catalogue_sync()


@pytest.fixture(autouse=True)
def _plans_in_committing_tests(request):
    # Committing tests flush the tables between tests, the migration-loaded plans with them.
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        request.getfixturevalue("transactional_db")
        plan_catalogue_sync()


@pytest.fixture
def password() -> str:
    return DEFAULT_PASSWORD


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def make_user(db):
    return UserFactory


@pytest.fixture
def subscribe(db):
    """Give a user a plan through the local provider: subscribe(user, "professional")."""

    def _subscribe(user, plan_code: str = "professional"):
        return subscription_grant_local(user=user, plan=plan_get(code=plan_code))

    return _subscribe


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def api_client(user) -> APIClient:
    """An API client authenticated as `user` with a real bearer token."""
    _, raw = account_services.api_token_create(user=user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    client.raw_token = raw
    return client


class TotpClock:
    """An authenticator app: codes computed from the device's provisioning URI (the QR code's content)."""

    def __init__(self, device):
        self.totp = pyotp.parse_uri(device.config_url)

    def now(self) -> str:
        return self.totp.now()

    def at_offset(self, steps: int) -> str:
        """The code `steps` time steps from now (django-otp accepts one step either side)."""
        return self.totp.at(time.time() + steps * self.totp.interval)


@pytest.fixture
def two_factor_user(user):
    """`user` with confirmed TOTP; returns (user, clock, backup_codes)."""
    device = account_services.two_factor_enrol_begin(user=user)
    clock = TotpClock(device)
    _, codes = account_services.two_factor_enrol_confirm(user=user, code=clock.now())
    return user, clock, codes


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix, django_db_keepdb, django_db_createdb, django_db_use_migrations
):
    # A missing test database starts as a copy of the migrated template (quantmesh/dbtemplate.py)
    # instead of two minutes of migrations; --reuse-db then finds it with nothing left to apply.
    # --create-db still migrates from nothing.
    if django_db_keepdb and not django_db_createdb and django_db_use_migrations:
        from django.db import connection

        from quantmesh.dbtemplate import database_from_template

        database_from_template(connection.settings_dict, connection.creation._get_test_db_name())


@pytest.fixture
def browser(monkeypatch):
    """Headless Debian Chromium through Playwright, for the console's browser tests."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    require_service(Path(CHROMIUM).exists(), "Debian's chromium is not installed (apt-get install chromium)")
    # Playwright's sync API runs an event loop in this thread: Django would take the test's own
    # database reads (plain synchronous code) for async code and refuse them.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
