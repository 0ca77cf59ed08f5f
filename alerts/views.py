"""The console's notification settings: channels, Telegram chat id, which events; recent alerts."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from quantmesh.errors import ServiceError

from . import selectors, services
from .models import AlertKind


@login_required
def notification_settings(request):
    current = services.alert_settings_get(user=request.user)
    form = {
        "email_enabled": current.email_enabled,
        "telegram_enabled": current.telegram_enabled,
        "telegram_chat_id": current.telegram_chat_id,
        "events": current.events,
    }
    if request.method == "POST":
        form = {
            "email_enabled": request.POST.get("email_enabled") == "on",
            "telegram_enabled": request.POST.get("telegram_enabled") == "on",
            "telegram_chat_id": request.POST.get("telegram_chat_id", "")[:64],
            "events": request.POST.getlist("events"),
        }
        try:
            services.alert_settings_update(user=request.user, **form)
        except ServiceError as error:
            messages.error(request, error.message)  # the form keeps what was typed
        else:
            messages.success(request, _("Notification settings saved."))
            return redirect("notification_settings")
    context = {
        "form": form,
        "kinds": AlertKind.choices,
        "alerts": selectors.alert_list(user=request.user, limit=20),
        "telegram_available": bool(settings.QM_TELEGRAM_BOT_TOKEN),
    }
    return render(request, "alerts/notification_settings.html", context)
