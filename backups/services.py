"""Backups: take one (consistently, while the engine runs), restore one, prune old ones."""

from __future__ import annotations

import logging
from datetime import timedelta

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.selectors import user_language
from instances import selectors as instance_selectors
from instances import services as instance_services
from instances.models import Instance, InstanceEvent
from quantmesh.errors import ServiceError
from quantmesh.tasks import enqueue_on_commit

from . import archive, tasks
from .models import Backup
from .signals import backup_failed

logger = logging.getLogger(__name__)
S = Instance.Status
K = InstanceEvent.Kind


def _storage():
    return storages["backups"]


def _collect(instance: Instance) -> dict[str, bytes]:
    """The instance's data files; the database copied consistently whether the engine runs or not."""
    database = None
    if instance_selectors.instance_engine_running(instance=instance):
        reply = instance_selectors.instance_engine_get(instance=instance, path="/api/backup/database", timeout=30)
        if reply is not None and reply.status == 200:
            database = archive.database_standalone(reply.body)
    if database is None:
        stored = _read(instance, archive.DATABASE)
        if stored is None:
            raise archive.BackupError(_("the instance has no engine database yet"))
        database = archive.database_consolidated(stored, _read(instance, archive.DATABASE + "-wal"))
    files = {archive.DATABASE: database}
    config = _read(instance, archive.CONFIG)
    if config is not None:
        files[archive.CONFIG] = config
    # The engine keeps the exchange keys encrypted under the instance's secrets key (an engine that
    # has not started since run keys came may still hold a plaintext secrets.yaml).
    sealed = _read(instance, archive.ENGINE_SECRETS)
    plain = _read(instance, archive.SECRETS)
    if sealed:
        files[archive.SECRETS] = Fernet(instance_services.instance_secrets_key(instance)).decrypt(sealed)
    elif plain:
        files[archive.SECRETS] = plain
    return files


def _read(instance: Instance, path: str) -> bytes | None:
    return instance_selectors.instance_file_read(instance=instance, path=path)


def engine_files(*, instance: Instance, files: dict[str, bytes]) -> dict[str, bytes]:
    """A backup's files as the target engine keeps them: the exchange keys sealed with its own key."""
    files = dict(files)
    plain = files.pop(archive.SECRETS, None)
    if plain is not None:
        files[archive.ENGINE_SECRETS] = Fernet(instance_services.instance_secrets_key(instance)).encrypt(plain)
    return files


def backup_reencrypt(*, backup: Backup) -> None:
    """The backup file again with its secrets under the first key of the portal's list (key rotation):
    written under a new name first, then recorded, then the old file deleted (nothing is ever lost)."""
    with _storage().open(backup.storage_key, "rb") as handle:
        files, manifest = archive.read(handle.read(), expected_sha256=backup.sha256)
    blob = archive.build(files, instance_id=manifest["instance_id"], created_at=manifest["created_at"])
    old_key = backup.storage_key
    new_key = _storage().save(old_key, ContentFile(blob))
    Backup.objects.filter(pk=backup.pk).update(
        storage_key=new_key, sha256=archive.checksum(blob), size_bytes=len(blob), manifest=archive.read(blob)[1]
    )
    if new_key != old_key:
        _storage().delete(old_key)


def backup_create(*, instance: Instance, kind: str) -> Backup:
    """Back the instance up now. A failure is recorded as a failed backup (and alerted), not raised;
    its reason is written in the owner's language (daily backups run outside any request)."""
    backup = Backup(instance=instance, owner_id=instance.owner_id, kind=kind, created_at=timezone.now())
    try:
        with translation.override(user_language(instance.owner)):
            _backup_write(backup, instance)
    except (archive.BackupError, instance_services.BackendError, OSError) as error:
        logger.warning("backup of %s failed: %s", instance.instance_id, error)
        backup.status = Backup.Status.FAILED
        backup.error = str(error)
    backup.save()
    outcome = {"backup": backup.backup_id, "backup_kind": kind}
    if backup.status == Backup.Status.FAILED:
        instance_services.instance_event_record(instance=instance, kind=K.BACKUP_FAILED, reason=backup.error, **outcome)
        transaction.on_commit(lambda: backup_failed.send(sender=Backup, backup=backup))
    else:
        instance_services.instance_event_record(
            instance=instance, kind=K.BACKUP_CREATED, size_bytes=backup.size_bytes, **outcome
        )
    return backup


def _backup_write(backup: Backup, instance: Instance) -> None:
    """The instance's files archived into backup storage, recorded on `backup` (not yet saved)."""
    files = _collect(instance)
    blob = archive.build(files, instance_id=instance.instance_id, created_at=backup.created_at.isoformat())
    manifest = archive.read(blob)[1]
    key = f"{instance.owner_id}/{instance.instance_id}/{backup.backup_id}.tar.gz"
    backup.storage_key = _storage().save(key, ContentFile(blob))
    backup.size_bytes = len(blob)
    backup.sha256 = archive.checksum(blob)
    backup.manifest = manifest
    backup.status = Backup.Status.OK


def backup_read(*, backup: Backup) -> dict[str, bytes]:
    """The backup's files, verified; ServiceError 409 naming the problem when it cannot be used."""
    if backup.status != Backup.Status.OK:
        raise ServiceError(
            code="backup_unusable",
            message=_("%(backup)s failed: %(error)s") % {"backup": backup.backup_id, "error": backup.error},
            status=409,
        )
    try:
        with _storage().open(backup.storage_key, "rb") as handle:
            blob = handle.read()
    except (FileNotFoundError, OSError):
        raise ServiceError(
            code="backup_missing",
            message=_("The file of %(backup)s is missing from backup storage; nothing was changed.")
            % {"backup": backup.backup_id},
            status=409,
        ) from None
    try:
        return archive.read(blob, expected_sha256=backup.sha256)[0]
    except archive.BackupError as error:
        raise ServiceError(
            code="backup_corrupt",
            message=_("%(backup)s: %(error)s; nothing was changed.") % {"backup": backup.backup_id, "error": error},
            status=409,
        ) from None


def backup_open(*, backup: Backup):
    """The backup file for download."""
    backup_read(backup=backup)  # refuse to hand out a file that would not restore
    return _storage().open(backup.storage_key, "rb")


def backup_restore(*, backup: Backup, target: Instance | None = None, actor=None) -> Instance:
    """Restore into the same instance (default) or into a new one of the same plan (`target` made by
    the caller). The backup is verified before the instance is touched; the work runs in a task."""
    backup_read(backup=backup)
    target = target or backup.instance
    if target.owner_id != backup.owner_id:
        raise ServiceError(code="not_found", message="No such instance.", status=404)
    if target.status in (S.DELETING, S.DELETED) or target.desired_state == Instance.Desired.DELETED:
        raise ServiceError(
            code="instance_deleted",
            message=_("That instance is deleted: restore the backup into a new instance instead."),
            status=409,
        )
    instance_services.instance_event_record(
        instance=target, kind=K.RESTORE_REQUESTED, actor=actor, from_status=target.status, backup=backup.backup_id
    )
    enqueue_on_commit(tasks.restore, backup.pk, target.instance_id)
    return target


def backup_restore_apply(*, backup_pk: int, instance_id: str) -> None:
    """The worker side of a restore: the backup's files, verified and sealed for the target engine,
    handed to instances to stop, write and start; idempotent (the same files again)."""
    backup = Backup.objects.select_related("instance").get(pk=backup_pk)
    instance = Instance.objects.select_related("plan", "owner").get(instance_id=instance_id)
    files = engine_files(instance=instance, files=backup_read(backup=backup))
    # An old write-ahead log would be replayed over the restored database: empty it.
    files |= {archive.DATABASE + "-wal": b"", archive.DATABASE + "-shm": b""}
    instance_services.instance_files_restore(instance_id=instance_id, files=files, backup_id=backup.backup_id)


def backups_daily() -> int:
    """Periodic: a daily backup of every instance not backed up in the last day. Returns how many."""
    since = timezone.now() - timedelta(hours=23)
    done = 0
    for instance in Instance.objects.exclude(status__in=[S.DELETED, S.DELETING, S.PROVISIONING]).exclude(
        backups__created_at__gte=since, backups__status=Backup.Status.OK
    ):
        backup_create(instance=instance, kind=Backup.Kind.DAILY)
        done += 1
    return done


def backups_prune(*, now=None) -> int:
    """Periodic: delete backups (files and rows) older than the retention period. Returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.QM_BACKUP_RETENTION_DAYS)
    pruned = 0
    for backup in Backup.objects.filter(created_at__lt=cutoff):
        if backup.storage_key:
            _storage().delete(backup.storage_key)
        backup.delete()
        pruned += 1
    return pruned
