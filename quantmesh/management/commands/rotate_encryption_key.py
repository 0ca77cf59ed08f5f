"""Re-encrypt everything the portal keeps encrypted under the first key of QM_ENCRYPTION_KEYS.

Rotation: put a new key first in QM_ENCRYPTION_KEYS (keeping the old ones after it), restart the
portal and workers, run this command, then drop the old keys. Every instance's proxy secret and
secrets key, and the exchange keys inside every stored backup, are rewritten; the command is
idempotent, so an interrupted run is simply run again.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from backups.models import Backup
from backups.services import backup_reencrypt
from instances.services import instance_secrets_reencrypt
from quantmesh.crypto import InvalidToken


class Command(BaseCommand):
    help = "Re-encrypt stored secrets and backups under the first key of QM_ENCRYPTION_KEYS."

    def handle(self, *args, **options):
        try:
            instances = instance_secrets_reencrypt()
        except InvalidToken:
            raise CommandError(
                "An instance secret opens with none of QM_ENCRYPTION_KEYS: keep the old key listed."
            ) from None
        backups, unreadable = 0, []
        for backup in Backup.objects.filter(status=Backup.Status.OK).exclude(storage_key="").iterator():
            try:
                backup_reencrypt(backup=backup)
                backups += 1
            except Exception as error:  # one unreadable backup must not stop the others; each is named
                unreadable.append(f"{backup.backup_id}: {error}")
        self.stdout.write(f"re-encrypted: {instances} instance(s), {backups} backup(s)")
        if unreadable:
            raise CommandError("not re-encrypted (still under an old key or damaged):\n" + "\n".join(unreadable))
