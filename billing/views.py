"""The console's billing page: the plan, subscribing (Stripe Checkout), changing plan, cancelling,
the card and invoices (Stripe's customer portal), the referral link. Same services as the API."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from quantmesh.errors import ServiceError

from . import services, stripe_gateway
from .models import ReferralCode
from .receivers import REFERRAL_SESSION_KEY
from .selectors import invoice_list, plan_list, referral_summary, subscription_view


def _error_text(error: ServiceError) -> str:
    over = error.details.get("over") if isinstance(error.details, dict) else None
    text = error.message
    if over:
        text += " " + "; ".join(f"{item['instance_id']}: {item['reason']}" for item in over)
    return text


@login_required
def billing(request):
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "subscribe":
                checkout_url = services.subscription_create(
                    user=request.user,
                    plan_code=request.POST.get("plan", ""),
                    interval=request.POST.get("interval", "month"),
                )
                if checkout_url:
                    return redirect(checkout_url)
                messages.success(request, _("Subscribed."))
            elif action == "change":
                changed = services.subscription_change_plan(
                    user=request.user,
                    new_plan_code=request.POST.get("plan", ""),
                    interval=request.POST.get("interval") or None,
                )
                messages.success(request, _("Change requested.") if changed.pending_plan_id else _("Plan changed."))
            elif action == "cancel":
                immediately = request.POST.get("immediately") == "1"
                services.subscription_cancel(user=request.user, immediately=immediately)
                messages.success(
                    request,
                    _("Subscription canceled.") if immediately else _("Your plan ends with the current period."),
                )
        except ServiceError as error:
            messages.error(request, _error_text(error))
        return redirect("billing")
    checkout = request.GET.get("checkout")
    if checkout == "success":
        messages.info(request, _("Payment received by Stripe: your plan starts as soon as Stripe confirms it."))
    elif checkout == "canceled":
        messages.info(request, _("Checkout canceled: nothing was charged."))
    stripe_enabled = settings.QM_BILLING_PROVIDER == "stripe"
    code = services.referral_code_for(user=request.user)
    context = {
        "subscription": subscription_view(user=request.user),
        "plans": plan_list(),
        "local_provider": not stripe_enabled,
        "stripe_enabled": stripe_enabled,
        "invoices": invoice_list(user=request.user) if stripe_enabled else [],
        "referral_url": request.build_absolute_uri(reverse("referral", kwargs={"code": code.code})),
        "referrals": referral_summary(user=request.user),
        "referral_percent": settings.QM_REFERRAL_CREDIT_PERCENT,
    }
    return render(request, "billing/billing.html", context)


@login_required
@require_POST
def billing_portal(request):
    """Stripe's customer portal: update the card, download invoices."""
    if settings.QM_BILLING_PROVIDER != "stripe":
        messages.error(request, _("Local billing has no payment details to manage."))
        return redirect("billing")
    try:
        url = stripe_gateway.portal_session_create(
            user=request.user, return_url=settings.QM_PUBLIC_URL + reverse("billing")
        )
    except stripe_gateway.StripeUnavailable as error:
        text = _("Stripe could not open the payment portal (%(error)s); try again.") % {"error": error}
        messages.error(request, text)
        return redirect("billing")
    return redirect(url)


def referral_landing(request, code: str):
    """A referral link: remember who sent the visitor, then sign up."""
    if ReferralCode.objects.filter(code=code).exists():
        request.session[REFERRAL_SESSION_KEY] = code
    return redirect("account_signup")
