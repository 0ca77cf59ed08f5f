"""Settings: embedded defaults, production refusals, and check --deploy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k3y-" + "a1b2c3d4e5f6g7h8i9j0" * 3
FERNET_KEY = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="
TOKENS = {name: "x" * 40 for name in ("QM_METRICS_TOKEN", "QM_TRAEFIK_PROVIDER_TOKEN", "QM_GRAFANA_DATASOURCE_TOKEN")}
# Everything production requires, so each case below removes or spoils one thing.
SAFE = {"SECRET_KEY": GOOD_KEY, **TOKENS, "QM_ENCRYPTION_KEYS": FERNET_KEY, "STRIPE_SECRET_KEY": "sk_test_configured"}


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECRET_KEY", "DEBUG"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "env, complaint",
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY is missing or insecure"),
        ({"SECRET_KEY": "django-insecure-abc" * 5}, "SECRET_KEY is missing or insecure"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY is missing or insecure"),
        ({"DEBUG": "1"}, "DEBUG must be off"),
        ({"STRIPE_SECRET_KEY": ""}, "The local billing provider grants plans without payment"),
        ({"QM_METRICS_TOKEN": ""}, "QM_METRICS_TOKEN is missing or short"),
        ({"QM_TRAEFIK_PROVIDER_TOKEN": "short"}, "QM_TRAEFIK_PROVIDER_TOKEN is missing or short"),
        ({"QM_GRAFANA_DATASOURCE_TOKEN": ""}, "QM_GRAFANA_DATASOURCE_TOKEN is missing or short"),
        ({"QM_ENCRYPTION_KEYS": ""}, "QM_ENCRYPTION_KEYS is missing"),
        ({"QM_ENCRYPTION_KEYS": "not-a-key"}, "each key must be a Fernet key"),
    ],
)
def test_production_refuses_unsafe_settings(env, complaint):
    result = run_manage("check", DJANGO_SETTINGS_MODULE="quantmesh.settings.production", **{**SAFE, **env})
    assert result.returncode != 0
    assert complaint in result.stderr


def test_production_check_deploy_is_clean():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SETTINGS_MODULE="quantmesh.settings.production",
        ALLOWED_HOSTS="quantmesh.cloud",
        **SAFE,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_no_missing_migrations():
    result = run_manage("makemigrations", "--check", "--dry-run", DJANGO_SETTINGS_MODULE="quantmesh.settings.test")
    assert result.returncode == 0, result.stdout + result.stderr


def test_embedded_defaults_without_environment():
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='quantmesh.settings.base'; django.setup();"
        "from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE'], s.CHANNEL_LAYERS['default']['BACKEND'],"
        " s.CELERY_TASK_ALWAYS_EAGER, s.EMAIL_BACKEND, s.QM_BASE_DOMAIN)"
    )
    clean = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "EMAIL_URL", "QM_BASE_DOMAIN"}
    }
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [
        "django.db.backends.sqlite3",
        "channels.layers.InMemoryChannelLayer",
        "True",
        "django.core.mail.backends.console.EmailBackend",
        "localhost",
    ]


def test_services_are_real_when_required(settings):
    """In CI (QM_REQUIRE_SERVICES=1) the suite must run on PostgreSQL and Redis, not the embedded parts."""
    from django.db import connection

    if os.environ.get("QM_REQUIRE_SERVICES") != "1":
        pytest.skip("QM_REQUIRE_SERVICES is not set: the embedded defaults are allowed")
    assert connection.vendor == "postgresql"
    assert settings.CACHES["default"]["BACKEND"].endswith("RedisCache")
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
