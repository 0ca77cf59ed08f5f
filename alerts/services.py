"""Alerts: raise one (filtered by the user's settings, de-duplicated), deliver it (e-mail, Telegram,
each channel once, retried by the task), and the periodic watch over running engines."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.selectors import user_language

from quantmesh.errors import ServiceError

from . import telegram
from .models import Alert, AlertKind, AlertSettings

logger = logging.getLogger(__name__)
# A Telegram chat id: a (negative for groups) integer, or a public channel's @username.
TELEGRAM_CHAT_ID = re.compile(r"-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31}")


class DeliveryFailed(Exception):
    """At least one channel failed; the task retries it (channels already delivered are skipped)."""


def alert_settings_get(*, user) -> AlertSettings:
    found, _created = AlertSettings.objects.get_or_create(user=user, defaults={"events": list(AlertKind.values)})
    return found


def alert_settings_update(
    *, user, email_enabled: bool, telegram_enabled: bool, telegram_chat_id: str, events: list[str]
) -> AlertSettings:
    unknown = sorted(set(events) - set(AlertKind.values))
    if unknown:
        raise ServiceError(
            code="invalid_request",
            message=f"events: unknown alert kinds {', '.join(unknown)}; choose from {', '.join(AlertKind.values)}.",
            details={"events": unknown},
        )
    if telegram_enabled and not telegram_chat_id.strip():
        raise ServiceError(
            code="invalid_request",
            message="telegram_chat_id: required to receive Telegram alerts (message the bot, then paste the chat id).",
            details={"telegram_chat_id": ["This field is required when Telegram is on."]},
        )
    chat_id = telegram_chat_id.strip()
    if chat_id and not TELEGRAM_CHAT_ID.fullmatch(chat_id):
        raise ServiceError(
            code="invalid_request",
            message="telegram_chat_id: a number such as 123456789 (or -100… for a group), or a channel's @name.",
            details={"telegram_chat_id": ["Not a Telegram chat id."]},
        )
    current = alert_settings_get(user=user)
    current.email_enabled = email_enabled
    current.telegram_enabled = telegram_enabled
    current.telegram_chat_id = telegram_chat_id.strip()
    current.events = [kind for kind in AlertKind.values if kind in events]
    current.save()
    return current


def alert_raise(*, user, kind: str, subject: str, message: str, instance=None) -> Alert | None:
    """Alert `user` unless they opted out of `kind` or the same alert (kind, instance, subject) went
    out within the de-duplication window. Delivery happens in a task once the caller's transaction commits."""
    preferences = alert_settings_get(user=user)
    channels = preferences.channels()
    if not preferences.wants(kind) or not channels:
        return None
    since = timezone.now() - timedelta(seconds=settings.QM_ALERT_DEDUPE_SECONDS)
    with transaction.atomic():
        if Alert.objects.filter(
            user=user, kind=kind, instance=instance, subject=subject[:200], created_at__gte=since
        ).exists():
            return None
        alert = Alert.objects.create(
            user=user, instance=instance, kind=kind, subject=subject[:200], message=message, channels=channels
        )
        alert_id = alert.pk
        transaction.on_commit(lambda: _deliver_task(alert_id))
    return alert


def _deliver_task(alert_id: int) -> None:
    from .tasks import deliver

    deliver.delay(alert_id)


def alert_deliver(*, alert_id: int, final_attempt: bool = False) -> Alert | None:
    """Send the alert on each of its channels not yet delivered; idempotent."""
    alert = Alert.objects.select_related("user", "instance").filter(pk=alert_id).first()
    if alert is None or alert.status == Alert.Status.SENT:
        return alert
    preferences = alert_settings_get(user=alert.user)
    errors = []
    for channel in alert.channels:
        if channel in alert.delivered:
            continue
        try:
            if channel == "email":
                send_mail(alert.subject, alert.message, None, [alert.user.email])
            elif channel == "telegram":
                telegram.send_message(chat_id=preferences.telegram_chat_id, text=f"{alert.subject}\n\n{alert.message}")
            alert.delivered[channel] = timezone.now().isoformat()
        except (telegram.TelegramError, OSError) as error:
            errors.append(f"{channel}: {error}")
    alert.attempts += 1
    alert.last_error = "; ".join(errors)
    if not errors:
        alert.status = Alert.Status.SENT
    elif final_attempt:
        alert.status = Alert.Status.FAILED
    alert.save()
    if errors and not final_attempt:
        raise DeliveryFailed(alert.last_error)
    return alert


def _risk_event_record(instance, paused: list[str]) -> None:
    """An instance event when risk control pauses symbols: once per change, and again only after the
    de-duplication window while the same symbols stay paused (the watch runs every minute)."""
    from instances.events import instance_event_record

    last = instance.events.filter(kind="risk_triggered").first()
    since = timezone.now() - timedelta(seconds=settings.QM_ALERT_DEDUPE_SECONDS)
    if last is None or last.detail.get("symbols") != paused or last.created_at < since:
        instance_event_record(instance=instance, kind="risk_triggered", from_status=instance.status, symbols=paused)


def instances_watch() -> int:
    """Periodic: look at every running engine for what no event reports, risk control that paused
    trading and CPU or memory near the plan's limit. Returns how many alerts were raised."""
    from instances import engine_client
    from instances.models import Instance
    from instances.runtime import get_backend
    from instances.runtime.base import BackendError

    backend = get_backend()
    threshold = settings.QM_ALERT_RESOURCE_THRESHOLD
    raised = 0
    for instance in Instance.objects.filter(status=Instance.Status.RUNNING).select_related("owner", "plan"):
        try:
            stats = backend.stats(instance.instance_id)
        except BackendError:
            stats = None
        if stats is not None and max(stats.cpu_usage, stats.memory_usage) >= threshold:
            with translation.override(user_language(instance.owner)):
                subject = _("%(instance)s: near its resource limit") % {"instance": instance.instance_id}
                message = _(
                    "CPU %(cpu)s of %(cores)s core(s), memory %(memory)s of %(memory_limit)s MB. Reduce its "
                    "trading pairs or upgrade the plan."
                ) % {
                    "cpu": f"{stats.cpu_usage:.0%}",
                    "cores": f"{stats.cpu_limit:g}",
                    "memory": f"{stats.memory_usage:.0%}",
                    "memory_limit": stats.memory_limit_mb,
                }
            raised += bool(
                alert_raise(
                    user=instance.owner,
                    kind=AlertKind.RESOURCE_HIGH,
                    instance=instance,
                    subject=subject,
                    message=message,
                )
            )
        reply = engine_client.engine_request(instance, "/api/status", backend=backend)
        if reply is None or reply.status != 200:
            continue
        paused = [s["symbol"] for s in reply.json().get("symbols", []) if s.get("risk_state", "ok") != "ok"]
        if paused:
            _risk_event_record(instance, paused)
            with translation.override(user_language(instance.owner)):
                subject = _("%(instance)s: risk control triggered") % {"instance": instance.instance_id}
                message = _("Risk control paused trading of %(symbols)s. Check the instance page.") % {
                    "symbols": _(", ").join(paused)
                }
            raised += bool(
                alert_raise(
                    user=instance.owner,
                    kind=AlertKind.RISK_TRIGGERED,
                    instance=instance,
                    subject=subject,
                    message=message,
                )
            )
    return raised
