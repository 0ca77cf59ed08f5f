"""Databases copied from the migrated template (quantmesh/dbtemplate.py) and the web server's sizing."""

from __future__ import annotations

import sqlite3

import pytest
from django.db import connection

from quantmesh import dbtemplate
from quantmesh.server import WorkersNeedRedis, gunicorn_argv, web_workers


def test_the_fingerprint_covers_every_app_with_migrations():
    from django.db.migrations.loader import MigrationLoader

    apps = {app for app, _ in MigrationLoader(None, ignore_no_migrations=True).disk_migrations}
    assert {"djstripe", "accounts", "billing", "instances", "auth"} <= apps
    assert dbtemplate.migrations_fingerprint() == dbtemplate.migrations_fingerprint()


def test_sqlite_copies_the_template_and_keeps_an_existing_database(tmp_path, monkeypatch):
    templates = tmp_path / "templates"
    templates.mkdir()
    monkeypatch.setenv("QM_DB_TEMPLATE_DIR", str(templates))
    template = templates / f"{dbtemplate.migrations_fingerprint()}.sqlite3"
    with sqlite3.connect(template) as db:  # stands in for a migrated one: no two minutes in a unit test
        db.execute("CREATE TABLE marker (x)")
    target = tmp_path / "var" / "db.sqlite3"
    settings_dict = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(target)}

    assert dbtemplate.database_from_template(settings_dict, str(target)) is True
    with sqlite3.connect(target) as db:
        db.execute("INSERT INTO marker VALUES (1)")
    assert dbtemplate.database_from_template(settings_dict, str(target)) is False  # kept, data and all
    with sqlite3.connect(target) as db:
        assert db.execute("SELECT count(*) FROM marker").fetchone() == (1,)

    assert dbtemplate.database_from_template(settings_dict, str(target), replace=True) is True
    with sqlite3.connect(target) as db:
        assert db.execute("SELECT count(*) FROM marker").fetchone() == (0,)


@pytest.mark.django_db
def test_postgresql_copies_a_migrated_database(django_db_blocker):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    import psycopg

    settings_dict = connection.settings_dict
    name = f"{settings_dict['NAME']}_copy"
    # The test database itself was made from the template (tests/conftest.py): it exists already.
    assert dbtemplate.database_from_template(settings_dict, name, replace=True) is True
    try:
        copy = psycopg.connect(host=settings_dict["HOST"], port=settings_dict["PORT"], user=settings_dict["USER"],
                               dbname=name)  # fmt: skip
        with copy:
            applied = copy.execute("SELECT count(*) FROM django_migrations WHERE app = 'djstripe'").fetchone()[0]
        assert applied > 0
        assert dbtemplate.database_from_template(settings_dict, name) is False
    finally:
        with dbtemplate._admin_connection(settings_dict) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_web_workers_follow_the_setting_and_need_redis_for_more_than_one(settings, monkeypatch):
    settings.REDIS_URL = ""
    settings.QM_WEB_WORKERS = 0
    assert web_workers() == 1
    settings.QM_WEB_WORKERS = 3
    with pytest.raises(WorkersNeedRedis):
        web_workers()
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    assert web_workers() == 3
    settings.QM_WEB_WORKERS = 0
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert web_workers() == 4


def test_the_server_binds_ipv6_in_brackets():
    argv = gunicorn_argv(host="::1", port=8000, workers=2)
    assert argv[argv.index("--bind") + 1] == "[::1]:8000"
    assert argv[argv.index("--workers") + 1] == "2"
