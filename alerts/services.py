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
from django.utils.translation import gettext_lazy

from accounts.selectors import user_language
from instances import selectors as instance_selectors
from instances import services as instance_services
from instances.models import Instance, InstanceEvent
from instances.presentation import cause_text, reason_text
from quantmesh.errors import ServiceError
from quantmesh.tasks import enqueue_on_commit

from . import tasks, telegram
from .models import Alert, AlertKind, AlertSettings

logger = logging.getLogger(__name__)
# A Telegram chat id: a (negative for groups) integer, or a public channel's @username.
TELEGRAM_CHAT_ID = re.compile(r"-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31}")
Kind = InstanceEvent.Kind
NOT_TRADING = (
    gettext_lazy("{id} is not trading: {cause}"),
    gettext_lazy("The engine runs but is not trading: {reason}.\n\nFix it: {fix_url}\nThe instance: {console_url}"),
)
# The instance events customers are alerted of: (alert kind, subject, message), rendered in the owner's language.
INSTANCE_EVENTS = {
    Kind.CRASHED: (
        AlertKind.INSTANCE_DOWN,
        gettext_lazy("{id} crashed"),
        gettext_lazy("The engine stopped: {reason}. It is being restarted."),
    ),
    Kind.CRASH_LOOP: (
        AlertKind.INSTANCE_DOWN,
        gettext_lazy("{id} is crash-looping"),
        gettext_lazy(
            "The engine keeps crashing ({reason}) and was left stopped. Check its logs and configuration, "
            "then start it."
        ),
    ),
    Kind.FAILED: (AlertKind.INSTANCE_DOWN, gettext_lazy("{id} failed"), gettext_lazy("The instance failed: {reason}.")),
    Kind.STOPPED_BY_PLAN: (AlertKind.BILLING, gettext_lazy("{id} was stopped by your plan"), "{reason}"),
    Kind.DOMAIN_UNROUTED: (AlertKind.BILLING, gettext_lazy("A custom domain of {id} is no longer routed"), "{reason}"),
    Kind.NODE_UNREACHABLE: (
        AlertKind.INSTANCE_DOWN,
        "{id}: {reason}",
        gettext_lazy(
            "The server it runs on cannot be reached ({reason}). Nothing is deleted; it runs again when the "
            "server is back."
        ),
    ),
    Kind.UNHEALTHY: (AlertKind.INSTANCE_UNHEALTHY, *NOT_TRADING),
    Kind.TRADING_ERROR: (AlertKind.INSTANCE_UNHEALTHY, *NOT_TRADING),
    Kind.TRADING_PAUSED: (
        AlertKind.RISK_TRIGGERED,
        gettext_lazy("{id}: trading paused by risk control ({cause})"),
        gettext_lazy("{reason}.\n\nReview the risk settings: {fix_url}\nThe instance: {console_url}"),
    ),
}


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
    current.save(update_fields=["email_enabled", "telegram_enabled", "telegram_chat_id", "events"])
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
        enqueue_on_commit(tasks.deliver, alert.pk)
    return alert


def alerts_for_instance_events(*, event_ids: list[int]) -> list:
    """The alerts raised for these events; alert_raise drops repeats, so a retried task raises nothing twice."""
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
            if event.kind == Kind.UNHEALTHY:
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
    return cause_text(cause) or _("unknown cause")


def _reason_words(reason: str | None) -> str:
    return reason_text(reason) if reason else _("no reason recorded")


def _why_unhealthy(instance) -> dict:
    """An unhealthy engine is asked why (its trading state), so the alert names the cause, not a symptom."""
    instance_services.engine_status_refresh(instance=instance)
    if instance.trading_reason:
        return {"reason": _reason_words(instance.trading_reason), "cause": _cause_words(instance.trading_cause)}
    return {
        "reason": _("its trading loop has not ticked recently (stale heartbeat)"),
        "cause": _("stale heartbeat"),
    }


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
    alert.save(update_fields=["delivered", "attempts", "last_error", "status"])
    if errors and not final_attempt:
        raise DeliveryFailed(alert.last_error)
    return alert


def _risk_event_record(instance, paused: list[str]) -> None:
    """An instance event when risk control pauses symbols: once per change, and again only after the
    de-duplication window while the same symbols stay paused (the watch runs every minute)."""
    last = instance.events.filter(kind=Kind.RISK_TRIGGERED).first()
    since = timezone.now() - timedelta(seconds=settings.QM_ALERT_DEDUPE_SECONDS)
    if last is None or last.detail.get("symbols") != paused or last.created_at < since:
        instance_services.instance_event_record(
            instance=instance, kind=Kind.RISK_TRIGGERED, from_status=instance.status, symbols=paused
        )


def instances_watch() -> int:
    """Periodic: look at every running engine for what no event reports, risk control that paused
    trading and CPU or memory near the plan's limit. Returns how many alerts were raised."""
    threshold = settings.QM_ALERT_RESOURCE_THRESHOLD
    raised = 0
    for instance in Instance.objects.filter(status=Instance.Status.RUNNING).select_related("owner", "plan"):
        stats = instance_selectors.instance_runtime_stats(instance_id=instance.instance_id)
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
        reply = instance_selectors.instance_engine_get(instance=instance, path="/api/status")
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
