"""The console's billing page: the plan, subscribing, changing plan, cancelling (same services as the API)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from quantmesh.api.errors import ApiError

from . import services
from .selectors import plan_list, subscription_view


@login_required
def billing(request):
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "subscribe":
                services.subscription_create(
                    user=request.user,
                    plan_code=request.POST.get("plan", ""),
                    interval=request.POST.get("interval", "month"),
                )
                messages.success(request, _("Subscribed."))
            elif action == "change":
                services.subscription_change_plan(user=request.user, new_plan_code=request.POST.get("plan", ""))
                messages.success(request, _("Plan changed."))
            elif action == "cancel":
                immediately = request.POST.get("immediately") == "1"
                services.subscription_cancel(user=request.user, immediately=immediately)
                messages.success(
                    request,
                    _("Subscription canceled.") if immediately else _("Your plan ends with the current period."),
                )
        except ApiError as error:
            over = error.details.get("over") if isinstance(error.details, dict) else None
            text = str(error.detail)
            if over:
                text += " " + "; ".join(f"{item['instance_id']}: {item['reason']}" for item in over)
            messages.error(request, text)
        return redirect("billing")
    context = {
        "subscription": subscription_view(user=request.user),
        "plans": plan_list(),
        "local_provider": settings.QM_BILLING_PROVIDER == "local",
    }
    return render(request, "billing/billing.html", context)
