"""Alerts listening to the product: instance events, failed payments, failed backups."""

from __future__ import annotations

from django.conf import settings
from django.dispatch import receiver
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.selectors import user_language
from backups.signals import backup_failed
from billing.signals import customer_notice, payment_failed
from instances.signals import instance_events_recorded

from .models import AlertKind
from .services import alert_raise

NOT_TRADING = (
    gettext_lazy("{id} is not trading: {cause}"),
    gettext_lazy("The engine runs but is not trading: {reason}.\n\nFix it: {fix_url}\nThe instance: {console_url}"),
)
# Subject and body of each event's alert, rendered in the owner's language.
INSTANCE_EVENTS = {
    "crashed": (
        AlertKind.INSTANCE_DOWN,
        gettext_lazy("{id} crashed"),
        gettext_lazy("The engine stopped: {reason}. It is being restarted."),
    ),
    "crash_loop": (
        AlertKind.INSTANCE_DOWN,
        gettext_lazy("{id} is crash-looping"),
        gettext_lazy(
            "The engine keeps crashing ({reason}) and was left stopped. Check its logs and configuration, "
            "then start it."
        ),
    ),
    "failed": (AlertKind.INSTANCE_DOWN, gettext_lazy("{id} failed"), gettext_lazy("The instance failed: {reason}.")),
    "stopped_by_plan": (AlertKind.BILLING, gettext_lazy("{id} was stopped by your plan"), "{reason}"),
    "domain_unrouted": (AlertKind.BILLING, gettext_lazy("A custom domain of {id} is no longer routed"), "{reason}"),
    "node_unreachable": (
        AlertKind.INSTANCE_DOWN,
        "{id}: {reason}",
        gettext_lazy(
            "The server it runs on cannot be reached ({reason}). Nothing is deleted; it runs again when the "
            "server is back."
        ),
    ),
    "unhealthy": (AlertKind.INSTANCE_UNHEALTHY, *NOT_TRADING),
    "trading_error": (AlertKind.INSTANCE_UNHEALTHY, *NOT_TRADING),
    "trading_paused": (
        AlertKind.RISK_TRIGGERED,
        gettext_lazy("{id}: trading paused by risk control ({cause})"),
        gettext_lazy("{reason}.\n\nReview the risk settings: {fix_url}\nThe instance: {console_url}"),
    ),
}


@receiver(instance_events_recorded)
def alert_on_instance_events(sender, events, **kwargs) -> None:
    # Raised by a worker, not inside the pass that saw them: one task for the whole batch.
    event_ids = [event.pk for event in events if event.kind in INSTANCE_EVENTS]
    if event_ids:
        from .tasks import instance_events_alert

        instance_events_alert.delay(event_ids)


def alerts_for_instance_events(*, event_ids: list[int]) -> list:
    """The alerts raised for these events; alert_raise drops repeats, so a retried task raises nothing twice."""
    from instances.models import InstanceEvent

    events = InstanceEvent.objects.select_related("instance__owner").filter(pk__in=event_ids, kind__in=INSTANCE_EVENTS)
    raised = []
    for event in events.order_by("pk"):
        kind, subject, message = INSTANCE_EVENTS[event.kind]
        instance = event.instance
        with translation.override(user_language(instance.owner)):
            values = {
                "id": instance.instance_id,
                "reason": _reason_words(event.detail.get("reason")),
                "cause": _cause_words(event.detail.get("cause", "")),
                **links(instance),
            }
            if event.kind == "unhealthy":
                values.update(_why_unhealthy(instance))
            subject, message = str(subject).format(**values), str(message).format(**values)
        alert = alert_raise(user=instance.owner, kind=kind, instance=instance, subject=subject, message=message)
        if alert is not None:
            raised.append(alert)
    return raised


def links(instance) -> dict:
    """Where the customer sees the instance, and where they fix its configuration (keys, grid, risk)."""
    console = f"{settings.QM_PUBLIC_URL}/instances/{instance.instance_id}"
    return {"console_url": console, "fix_url": f"{console}/open?to=config"}


def _cause_words(cause: str) -> str:
    from instances.presentation import cause_text

    return cause_text(cause) or _("unknown cause")


def _reason_words(reason: str | None) -> str:
    from instances.presentation import reason_text

    return reason_text(reason) if reason else _("no reason recorded")


def _why_unhealthy(instance) -> dict:
    """An unhealthy engine is asked why (its trading state), so the alert names the cause, not a symptom."""
    from instances.runtime import get_backend
    from instances.trading import engine_status_fetch

    engine_status_fetch(instance=instance, backend=get_backend())
    if instance.trading_reason:
        return {"reason": _reason_words(instance.trading_reason), "cause": _cause_words(instance.trading_cause)}
    return {
        "reason": _("its trading loop has not ticked recently (stale heartbeat)"),
        "cause": _("stale heartbeat"),
    }


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
