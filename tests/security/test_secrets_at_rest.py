"""Exchange keys never in plaintext on an instance's volume, on every backend: handed to the engine
at start outside the volume (a tmpfs file for process and docker, a Docker secret on swarm), kept
by the portal under a key list that rotates, and unharmed by a SECRET_KEY rotation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import call_command

from backups import archive
from backups.models import Backup
from backups.services import backup_read
from instances.models import Instance
from quantmesh import crypto
from quantmesh.crypto import decrypt, encrypt
from tests.db import committing_db
from tests.security.test_secrets import SECRET, _put_secrets

OLD_KEY, NEW_KEY = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def mount_type(path: str) -> str:
    """The filesystem type of the mount that holds `path` (longest matching mount point)."""
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        _, point, fstype, *_ = line.split()
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, fstype
    return kind


@committing_db
@pytest.mark.parametrize("runtime", ["process", "docker", "swarm"], indirect=True)
def test_exchange_keys_are_never_plaintext_on_the_volume(runtime, customer, customer_client, create_instance):
    instance_id = create_instance()["instance_id"]
    instance = Instance.objects.get(instance_id=instance_id)
    proxy_secret = decrypt(instance.proxy_secret_encrypted)
    _put_secrets(instance, runtime)

    if runtime.name == "process":
        volume = [p.read_bytes() for p in (runtime.root / instance_id / "data").rglob("*") if p.is_file()]
    else:
        volume = [runtime.read_file(instance_id, n) or b"" for n in ("secrets.yaml", "secrets.enc", "platform.yaml")]
    assert not [blob for blob in volume if SECRET.encode() in blob or proxy_secret.encode() in blob]
    assert runtime.read_file(instance_id, "secrets.yaml") is None
    from instances.services import instance_secrets_key

    sealed = runtime.read_file(instance_id, "secrets.enc")
    instance.refresh_from_db()
    assert SECRET in Fernet(instance_secrets_key(instance)).decrypt(sealed).decode()

    # The run keys came from outside the volume.
    if runtime.name == "swarm":
        spec = runtime.client.api.inspect_service(runtime.service_name(instance_id))["Spec"]
        secrets = spec["TaskTemplate"]["ContainerSpec"]["Secrets"]
        assert [s["SecretName"] for s in secrets] == [f"qm-keys-{instance_id}"]
        assert proxy_secret not in json.dumps(spec)
    else:
        keys = runtime.keys_root / instance_id / "keys.yaml"
        assert mount_type(str(keys)) == "tmpfs"
        assert yaml.safe_load(keys.read_text())["proxy_secret"] == proxy_secret
        assert oct(os.stat(runtime.keys_root).st_mode & 0o777) == "0o700"
        if runtime.name == "docker":
            container = runtime.client.api.inspect_container(runtime.container_name(instance_id))
            mounts = {m["Destination"]: m for m in container["Mounts"]}
            assert mounts["/run/quantmesh"]["Source"] == str(keys.parent) and mounts["/run/quantmesh"]["RW"] is False
    # After a restart the engine still opens its keys (masked in its config view).
    assert customer_client.post(f"/api/saas/instances/{instance_id}/restart").status_code == 200
    view = customer_client.get(f"/api/saas/instances/{instance_id}/export/config")
    content = b"".join(view.streaming_content) if view.streaming else view.content
    assert view.status_code == 200 and f"****{SECRET[-4:]}".encode() in content


@pytest.mark.django_db
def test_rotation_re_encrypts_instances_and_backups_and_secret_key_rotation_breaks_nothing(settings, user, subscribe):
    from instances.services import instance_secrets_key

    settings.QM_ENCRYPTION_KEYS = [OLD_KEY]
    subscribe(user, "professional")
    instance = Instance.objects.create(
        instance_id="qm-rot001-1700000000",
        slug="rot001",
        owner=user,
        plan=user.subscription.plan,
        status="stopped",
        image="x",
        proxy_secret_encrypted=encrypt("the-proxy-secret"),
    )
    secrets_key = instance_secrets_key(instance)
    blob = archive.build(
        {archive.DATABASE: _empty_database(), archive.SECRETS: f"secret: {SECRET}\n".encode()},
        instance_id=instance.instance_id,
        created_at="2026-01-01T00:00:00+00:00",
    )
    key = storages["backups"].save(f"tests/{instance.instance_id}.tar.gz", ContentFile(blob))
    backup = Backup.objects.create(
        instance=instance, owner=user, kind="manual", status="ok", storage_key=key, sha256=archive.checksum(blob)
    )

    settings.QM_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]  # a new key first, the old one still listed
    call_command("rotate_encryption_key")
    settings.QM_ENCRYPTION_KEYS = [NEW_KEY]  # the old key is gone
    settings.SECRET_KEY = "a-completely-different-secret-key-" + "x" * 40  # and SECRET_KEY rotated too
    instance.refresh_from_db()
    assert decrypt(instance.proxy_secret_encrypted) == "the-proxy-secret"
    assert instance_secrets_key(instance) == secrets_key  # the engine's key survives: its volume stays readable
    backup.refresh_from_db()
    assert SECRET.encode() in backup_read(backup=backup)[archive.SECRETS]
    assert backup.storage_key != key and not storages["backups"].exists(key)


@pytest.mark.django_db
def test_the_embedded_default_key_does_not_come_from_secret_key(settings, tmp_path):
    settings.QM_ENCRYPTION_KEYS = []
    settings.QM_ENCRYPTION_KEY_FILE = tmp_path / "encryption.key"
    token = encrypt("kept-secret")
    settings.SECRET_KEY = "rotated-secret-key-" + "y" * 40
    crypto._fernet.cache_clear()  # as a portal restarted with the new SECRET_KEY
    assert decrypt(token) == "kept-secret"
    assert oct(os.stat(tmp_path / "encryption.key").st_mode & 0o777) == "0o600"


def _empty_database() -> bytes:
    import sqlite3

    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (x)")
    return db.serialize()
