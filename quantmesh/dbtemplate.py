"""Databases copied from a migrated template instead of migrated from nothing.

Applying every migration (dj-stripe's above all) costs about two minutes of CPU. A benchmark's
database, the test database and a fresh `make run` need exactly the schema those migrations build,
so it is built once per set of migration files - the fingerprint below - and copied:

- PostgreSQL: a database `qm_template_<fingerprint>` on the same server, copied with
  `CREATE DATABASE ... TEMPLATE` (a file copy inside the server, about a second);
- SQLite: a file `<fingerprint>.sqlite3` in QM_DB_TEMPLATE_DIR (default ~/.cache/quantmesh/db-templates),
  copied.

A template is migrated by `manage.py migrate` in a process of its own, under a temporary name, and
renamed into place only once complete: a run that is interrupted, or two that race, never leave a
half-migrated template behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

import django
import psycopg
from django.conf import settings
from django.db.migrations.loader import MigrationLoader
from psycopg import errors, sql

TEMPLATE_PREFIX = "qm_template_"


def migrations_fingerprint() -> str:
    """A hash of every migration file Django would apply (ours and third parties'), with Django's version."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    digest = hashlib.sha256(django.get_version().encode())
    for (app_label, name), migration in sorted(loader.disk_migrations.items()):
        digest.update(f"{app_label}.{name}\n".encode())
        digest.update(Path(sys.modules[migration.__module__].__file__).read_bytes())
    return digest.hexdigest()[:16]


def _database_url(db: dict, name: str) -> str:
    if db["ENGINE"] == "django.db.backends.postgresql":
        credentials = quote(db.get("USER") or "", safe="")
        if db.get("PASSWORD"):
            credentials += ":" + quote(db["PASSWORD"], safe="")
        return f"postgres://{credentials}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{name}"
    return f"sqlite:///{name}"


def _migrate(db: dict, name: str) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "quantmesh.settings.base",
        "DATABASE_URL": _database_url(db, name),
        "DATABASE_POOL_SIZE": "0",
        "LOG_LEVEL": "WARNING",
    }
    manage = Path(settings.BASE_DIR) / "manage.py"
    subprocess.run([sys.executable, str(manage), "migrate", "--noinput", "-v0"], env=env, check=True)


# --- PostgreSQL -------------------------------------------------------------------------------


def _admin_connection(db: dict):
    return psycopg.connect(
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    )


def _pg_exists(admin, name: str) -> bool:
    return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def _pg_template(db: dict, admin) -> str:
    template = TEMPLATE_PREFIX + migrations_fingerprint()
    if _pg_exists(admin, template):
        return template
    building = f"{template}_building_{os.getpid()}"
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(building)))
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
    try:
        _migrate(db, building)
        rename = sql.SQL("ALTER DATABASE {} RENAME TO {}")
        admin.execute(rename.format(sql.Identifier(building), sql.Identifier(template)))
    except errors.DuplicateDatabase:  # another process finished the same template first
        admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(building)))
    except BaseException:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(building)))
        raise
    return template


def _pg_clone(db: dict, name: str, *, replace: bool) -> bool:
    with _admin_connection(db) as admin:
        if _pg_exists(admin, name):
            if not replace:
                return False
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        template = _pg_template(db, admin)
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    return True


# --- SQLite -----------------------------------------------------------------------------------


def _sqlite_template(db: dict) -> Path:
    directory = Path(os.environ.get("QM_DB_TEMPLATE_DIR") or Path.home() / ".cache" / "quantmesh" / "db-templates")
    template = directory / f"{migrations_fingerprint()}.sqlite3"
    if template.exists():
        return template
    directory.mkdir(parents=True, exist_ok=True)
    handle, building = tempfile.mkstemp(dir=directory, prefix=template.stem, suffix=".building")
    os.close(handle)
    os.unlink(building)
    try:
        _migrate(db, building)
        os.replace(building, template)  # atomic: a racing process's identical copy simply wins or loses
    finally:
        Path(building).unlink(missing_ok=True)
    return template


def _sqlite_clone(db: dict, name: str, *, replace: bool) -> bool:
    target = Path(name)
    if target.exists() and not replace:
        return False
    template = _sqlite_template(db)
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (target, Path(f"{target}-wal"), Path(f"{target}-shm"), Path(f"{target}-journal")):
        leftover.unlink(missing_ok=True)
    shutil.copyfile(template, target)
    return True


def database_from_template(db: dict, name: str, *, replace: bool = False) -> bool:
    """Make database `name` (on the server or engine of settings dict `db`) a copy of the migrated
    template, building the template first when no copy of these migrations exists yet. An existing
    database is kept (False) unless `replace`; True when a copy was made."""
    if db["ENGINE"] == "django.db.backends.postgresql":
        return _pg_clone(db, name, replace=replace)
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return _sqlite_clone(db, name, replace=replace)
    raise ValueError(f"no template databases for {db['ENGINE']}")
