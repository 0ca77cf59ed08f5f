"""Backups of real instances: taken while the engine trades, restored exactly, refused when damaged,
pruned by date, taken before deletes and plan changes."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
import urllib.request
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.utils import timezone

from backups import archive, services
from backups.models import Backup
from backups.signals import backup_failed
from billing.models import Plan
from instances.engine_client import PROXY_SECRET_HEADER
from instances.models import Instance
from instances.services import instance_change_plan, instance_secrets_key
from quantmesh.crypto import decrypt
from tests.db import committing_db
from tests.instances.conftest import running_rows
from tests.waiting import wait_for

pytestmark = committing_db

FAST_PAPER = {
    "paper": {"tick_seconds": 0.01, "volatility": 0.003, "seed": 7},
    "grid": {"price_interval": 100, "order_quote_size": 100},
}
SECRET = "sk-backup-test-9f8e7d6c5b4a"


@pytest.fixture(autouse=True)
def backup_dir(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "backups"},
        },
    }
    storages._storages.pop("backups", None)
    yield tmp_path / "backups"
    storages._storages.pop("backups", None)


def _engine(instance_id: str, backend, method: str, path: str, body: dict | None = None):
    instance = Instance.objects.get(instance_id=instance_id)
    host, port = backend.endpoint(instance_id)
    request = urllib.request.Request(  # noqa: S310 (loopback)
        f"http://{host}:{port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={PROXY_SECRET_HEADER: decrypt(instance.proxy_secret_encrypted), "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.read()


def _fills(database: bytes) -> list[tuple]:
    db = sqlite3.connect(":memory:")
    db.deserialize(archive.database_standalone(database))
    return db.execute("SELECT id, client_id, side, price, amount FROM fills ORDER BY id").fetchall()


def _trading_instance(create_instance, runtime, config=FAST_PAPER):
    instance_id = create_instance()["instance_id"]
    _engine(
        instance_id, runtime, "PUT", "/api/config", {"config": config, "secrets": {"api_key": "ak-1", "secret": SECRET}}
    )
    wait_for(
        lambda: (
            json.loads(_engine(instance_id, runtime, "GET", "/api/status")).get("fills", 0)
            or _fills_now(instance_id, runtime)
        )
    )
    return instance_id


def _fills_now(instance_id, runtime) -> int:
    return len(_fills(_engine(instance_id, runtime, "GET", "/api/backup/database")))


def _stored_files(backup: Backup) -> dict[str, bytes]:
    return services.backup_read(backup=backup)


@pytest.mark.parametrize("runtime", ["process", "docker"], indirect=True)
def test_backup_then_change_then_restore_gives_the_exact_data_back(create_instance, customer_client, runtime):
    instance_id = _trading_instance(create_instance, runtime)
    response = customer_client.post(f"/api/saas/instances/{instance_id}/backups")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "ok" and body["kind"] == "manual" and body["size_bytes"] > 0
    backup = Backup.objects.get(backup_id=body["backup_id"])
    saved = _stored_files(backup)
    saved_fills = _fills(saved["engine.db"])
    assert saved_fills, "the backup was taken while the engine traded"

    # Change the data: another config, and the engine keeps trading.
    _engine(
        instance_id,
        runtime,
        "PUT",
        "/api/config",
        {"config": {**FAST_PAPER, "grid": {"price_interval": 120, "order_quote_size": 50}}},
    )
    wait_for(lambda: _fills_now(instance_id, runtime) > len(saved_fills) + 3)

    # Restore into the stopped instance: its files are exactly the backup's.
    assert customer_client.post(f"/api/saas/instances/{instance_id}/stop").status_code == 200
    response = customer_client.post(
        f"/api/saas/instances/{instance_id}/backups/{backup.backup_id}/restore", {}, format="json"
    )
    assert response.status_code == 202, response.content
    assert response.json()["instance_id"] == instance_id
    assert runtime.read_file(instance_id, "engine.db") == saved["engine.db"]
    assert runtime.read_file(instance_id, "config.yaml") == saved["config.yaml"]
    # The exchange keys come back sealed with the instance's own key (never plaintext on the volume).
    assert runtime.read_file(instance_id, "secrets.yaml") is None
    sealed = runtime.read_file(instance_id, "secrets.enc")
    instance = Instance.objects.get(instance_id=instance_id)
    assert Fernet(instance_secrets_key(instance)).decrypt(sealed) == saved["secrets.yaml"]
    assert instance.status == "stopped"

    # Running: restore stops it, restores, starts it; the engine's trades begin with the backup's.
    assert customer_client.post(f"/api/saas/instances/{instance_id}/start").status_code == 200
    response = customer_client.post(
        f"/api/saas/instances/{instance_id}/backups/{backup.backup_id}/restore", {"into": "same"}, format="json"
    )
    assert response.status_code == 202
    instance = Instance.objects.get(instance_id=instance_id)
    events = list(instance.events.values_list("kind", "detail"))
    assert (instance.status, instance.desired_state) == ("running", "running"), (events, runtime.logs(instance_id, 30))
    restored = _fills(_engine(instance_id, runtime, "GET", "/api/backup/database"))
    assert restored[: len(saved_fills)] == saved_fills
    config = json.loads(_engine(instance_id, runtime, "GET", "/api/config"))
    assert config["config"]["grid"]["price_interval"] == FAST_PAPER["grid"]["price_interval"]
    kinds = list(instance.events.values_list("kind", flat=True))
    assert kinds.count("restored") == 2 and "restore_requested" in kinds


@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_restore_into_a_new_instance(create_instance, customer_client, runtime):
    instance_id = _trading_instance(create_instance, runtime)
    backup = services.backup_create(instance=Instance.objects.get(instance_id=instance_id), kind="manual")
    saved_fills = _fills(_stored_files(backup)["engine.db"])
    response = customer_client.post(
        f"/api/saas/instances/{instance_id}/backups/{backup.backup_id}/restore", {"into": "new"}, format="json"
    )
    assert response.status_code == 202, response.content
    new_id = response.json()["instance_id"]
    assert new_id != instance_id
    assert Instance.objects.get(instance_id=new_id).status == "running"
    assert _fills(_engine(new_id, runtime, "GET", "/api/backup/database"))[: len(saved_fills)] == saved_fills


@pytest.mark.parametrize("runtime", ["process"], indirect=True)
@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "missing file"])
def test_a_damaged_backup_is_refused_and_changes_nothing(create_instance, customer_client, runtime, backup_dir, damage):
    instance_id = _trading_instance(create_instance, runtime)
    backup = services.backup_create(instance=Instance.objects.get(instance_id=instance_id), kind="manual")
    path = backup_dir / backup.storage_key
    blob = path.read_bytes()
    if damage == "flipped byte":
        path.write_bytes(blob[:100] + bytes([blob[100] ^ 0xFF]) + blob[101:])
    elif damage == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    else:
        path.unlink()
    before = runtime.status(instance_id).started_at
    response = customer_client.post(
        f"/api/saas/instances/{instance_id}/backups/{backup.backup_id}/restore", {}, format="json"
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == ("backup_missing" if damage == "missing file" else "backup_corrupt")
    assert "nothing was changed" in error["message"]
    # The instance was not touched: same process, still running, no restore recorded.
    assert runtime.status(instance_id).started_at == before
    instance = Instance.objects.get(instance_id=instance_id)
    assert instance.status == "running"
    assert not instance.events.filter(kind__startswith="restore").exists()
    download = customer_client.get(f"/api/saas/instances/{instance_id}/backups/{backup.backup_id}/download")
    assert download.status_code == 409


@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_backup_file_holds_no_plaintext_secret_and_downloads(create_instance, customer_client, runtime, backup_dir):
    instance_id = _trading_instance(create_instance, runtime)
    backup = services.backup_create(instance=Instance.objects.get(instance_id=instance_id), kind="manual")
    blob = (backup_dir / backup.storage_key).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        contents = b"".join(tar.extractfile(m).read() for m in tar.getmembers())
        names = tar.getnames()
    assert SECRET.encode() not in contents and "secrets.yaml" not in names and "secrets.yaml.enc" in names
    assert SECRET.encode() in _stored_files(backup)["secrets.yaml"]
    download = customer_client.get(f"/api/saas/instances/{instance_id}/backups/{backup.backup_id}/download")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == blob
    listed = customer_client.get(f"/api/saas/instances/{instance_id}/backups").json()
    assert [b["backup_id"] for b in listed] == [backup.backup_id]


@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_backups_before_plan_change_and_delete(create_instance, customer_client, runtime, customer):
    instance_id = create_instance()["instance_id"]
    instance = Instance.objects.get(instance_id=instance_id)
    instance_change_plan(instance=instance, plan=Plan.objects.get(code="enterprise"))
    assert Backup.objects.filter(instance=instance, kind="before_plan_change", status="ok").count() == 1
    assert customer_client.delete(f"/api/saas/instances/{instance_id}").status_code == 200
    assert Backup.objects.filter(instance=instance, kind="before_delete", status="ok").count() == 1
    # The deleted instance's backups stay listed and restorable into a new instance.
    assert len(customer_client.get(f"/api/saas/instances/{instance_id}/backups").json()) == 2


@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_daily_backups_once_a_day_and_failures_are_signalled(create_instance, runtime, customer):
    ok_id = create_instance()["instance_id"]
    broken = Instance.objects.get(instance_id=create_instance()["instance_id"])
    runtime.remove(broken.instance_id, keep_data=False)  # its data is gone
    failures = []
    backup_failed.connect(lambda sender, backup, **kw: failures.append(backup.instance.instance_id), weak=False)
    try:
        assert services.backups_daily() == 2
    finally:
        backup_failed.receivers.clear()
    assert Backup.objects.get(instance__instance_id=ok_id, kind="daily").status == "ok"
    failed = Backup.objects.get(instance=broken, kind="daily")
    assert failed.status == "failed" and failed.error
    assert failures == [broken.instance_id]
    assert services.backups_daily() == 1  # the healthy one is done for today; the broken one is tried again


def test_retention_prunes_by_date(customer, backup_dir, settings):
    instance = running_rows(customer, 1, prefix="p")[0]
    now = timezone.now()
    rows = {}
    for age in (40, 31, 29, 1):
        key = storages["backups"].save(f"{customer.pk}/{instance.instance_id}/age{age}.tar.gz", ContentFile(b"x"))
        rows[age] = Backup.objects.create(
            instance=instance,
            owner=customer,
            kind="daily",
            status="ok",
            storage_key=key,
            created_at=now - timedelta(days=age),
        )
    assert services.backups_prune(now=now) == 2
    assert set(Backup.objects.values_list("pk", flat=True)) == {rows[29].pk, rows[1].pk}
    assert not (backup_dir / rows[40].storage_key).exists() and (backup_dir / rows[29].storage_key).exists()


def test_archive_checks(settings):
    blob = archive.build({"engine.db": _empty_db()}, instance_id="qm-x", created_at="now")
    files, manifest = archive.read(blob)
    assert manifest["instance_id"] == "qm-x" and set(files) == {"engine.db"}
    with pytest.raises(archive.BackupError, match="checksum"):
        archive.read(blob, expected_sha256="0" * 64)
    with pytest.raises(archive.BackupError, match="database is damaged"):
        archive.read(archive.build({"engine.db": b"not a database" * 100}, instance_id="qm-x", created_at="now"))


def _empty_db() -> bytes:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE fills (id INTEGER PRIMARY KEY)")
    return db.serialize()


@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_console_backups_page(create_instance, runtime, customer, client):
    instance_id = create_instance()["instance_id"]
    client.force_login(customer)
    page = client.get(f"/instances/{instance_id}/backups")
    assert page.status_code == 200 and b"Back up now" in page.content
    response = client.post(f"/instances/{instance_id}/backups", {"action": "create"}, follow=True)
    backup = Backup.objects.get(instance__instance_id=instance_id, kind="manual")
    assert backup.backup_id.encode() in response.content and b"taken" in response.content
    response = client.post(
        f"/instances/{instance_id}/backups", {"action": "restore", "backup_id": backup.backup_id, "into": "same"}
    )
    assert response.status_code == 302 and response["Location"] == f"/instances/{instance_id}"
    assert Instance.objects.get(instance_id=instance_id).events.filter(kind="restored").exists()
    assert client.get("/instances/qm-nope00-1700000000/backups").status_code == 404


def test_restore_choices_say_what_happens_and_deleted_instances_stay_reachable(
    create_instance, runtime, customer, client
):
    """Restoring into a new instance warned that the current data is replaced; a deleted instance's
    backups could not be reached from the console, and their page linked back to a 404."""
    from instances.services import instance_delete

    instance_id = create_instance()["instance_id"]
    client.force_login(customer)
    client.post(f"/instances/{instance_id}/backups", {"action": "create"})
    page = client.get(f"/instances/{instance_id}/backups").content.decode()
    new_form = page[page.index("Restore this backup into a new instance") :]
    new_form = new_form[: new_form.index("</form>")]
    assert 'value="new"' in new_form and "replaced" not in new_form
    same_form = page[page.index("Restore this backup into this instance") :]
    assert 'value="same"' in same_form[: same_form.index("</form>")] and "replaced" in same_form
    instance_delete(instance=Instance.objects.get(instance_id=instance_id), actor=customer)
    wait_for(lambda: Instance.objects.get(instance_id=instance_id).status == "deleted", what="the deletion")
    dashboard = client.get("/").content.decode()
    assert f"/instances/{instance_id}/backups" in dashboard
    page = client.get(f"/instances/{instance_id}/backups")
    assert page.status_code == 200
    content = page.content.decode()
    assert f'href="/instances/{instance_id}"' not in content  # no link to a page that is gone
    assert 'value="same"' not in content and 'value="new"' in content
