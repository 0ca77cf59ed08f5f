"""What backups tell the rest of the product: `backup_failed(backup)`."""

from django.dispatch import Signal

backup_failed = Signal()
