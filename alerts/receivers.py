"""Alerts listening to the product: instance events, failed payments, failed backups."""

from __future__ import annotations

from django.dispatch import receiver
from django.utils import translation
from django.utils.translation import gettext as _

from accounts.selectors import user_language
from backups.signals import backup_failed
from billing.signals import customer_notice, payment_failed
from instances.signals import instance_events_recorded
from quantmesh.tasks import enqueue_on_commit

from . import tasks
from .models import AlertKind
from .services import INSTANCE_EVENTS, alert_raise


@receiver(instance_events_recorded)
def alert_on_instance_events(sender, events, **kwargs) -> None:
    # Raised by a worker, not inside the pass that saw them: one task for the whole batch.
    event_ids = [event.pk for event in events if event.kind in INSTANCE_EVENTS]
    if event_ids:
        enqueue_on_commit(tasks.instance_events_alert, event_ids)


@receiver(payment_failed)
def alert_on_payment_failed(sender, user, **kwargs) -> None:
    with translation.override(user_language(user)):
        subject = _("Your QuantMesh Cloud payment failed")
        message = _(
            "Your last payment failed. Update your card on the billing page, or your instances will be stopped "
            "when the grace period ends (their data is kept)."
        )
    alert_raise(user=user, kind=AlertKind.PAYMENT_FAILED, subject=subject, message=message)


@receiver(customer_notice)
def alert_on_billing_notice(sender, user, subject: str, message: str, **kwargs) -> None:
    alert_raise(user=user, kind=AlertKind.BILLING, subject=subject, message=message)


@receiver(backup_failed)
def alert_on_backup_failed(sender, backup, **kwargs) -> None:
    with translation.override(user_language(backup.owner)):
        subject = _("Backup of %(instance)s failed") % {"instance": backup.instance.instance_id}
        message = _("The %(kind)s backup failed: %(error)s") % {
            "kind": backup.get_kind_display().lower(),
            "error": backup.error,
        }
    alert_raise(
        user=backup.owner, kind=AlertKind.BACKUP_FAILED, instance=backup.instance, subject=subject, message=message
    )
