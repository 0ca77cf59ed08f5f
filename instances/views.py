"""Console pages of instances: create, detail with live logs and metrics, lifecycle actions,
and the hand-over into an instance's own URL. Every action goes through the same services as the API."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from billing.selectors import entitlements_for, plan_list
from quantmesh.errors import ServiceError

from . import access, presentation, selectors, services, trading
from .models import InstanceEvent
from .services import domains

ACTION_DONE = {
    "start": gettext_lazy("Starting %(instance)s."),
    "stop": gettext_lazy("Stopping %(instance)s."),
    "restart": gettext_lazy("Restarting %(instance)s."),
    "delete": gettext_lazy("Deleting %(instance)s; its data is kept for 30 days."),
}
ACTION_UNCHANGED = {
    "start": gettext_lazy("%(instance)s is already running."),
    "stop": gettext_lazy("%(instance)s is already stopped."),
}
ACTIONS = {
    "start": services.instance_start,
    "stop": services.instance_stop,
    "restart": services.instance_restart,
    "delete": services.instance_delete,
}


def _owned(request, instance_id: str):
    instance = selectors.instance_get(owner=request.user, instance_id=instance_id)
    if instance is None:
        raise Http404
    return instance


@login_required
def instance_create(request):
    """Choose a plan, confirm, then watch the instance come up on its page."""
    rights = entitlements_for(request.user)
    plans = [plan for plan in plan_list() if rights.allows_plan(plan)]
    # The customer's own plan is the default (not the first, cheapest one).
    chosen = request.POST.get("plan") or request.GET.get("plan") or (rights.plan.code if rights.plan else None)
    if request.method == "POST" and request.POST.get("confirm") == "1":
        try:
            instance = services.instance_create(
                owner=request.user, plan_code=chosen or "", region=request.POST.get("region") or None
            )
        except ServiceError as error:
            messages.error(request, error.message)
        else:
            return redirect("instance_detail", instance_id=instance.instance_id)
    context = {
        "plans": plans,
        "chosen": chosen,
        "rights": rights,
        "count": selectors.instance_list(owner=request.user).count(),
        "regions": settings.QM_REGIONS,
        "default_region": settings.QM_DEFAULT_REGION,
    }
    return render(request, "instances/create.html", context)


TABS = {"overview", "domains", "autoscaling"}


def trading_context(instance) -> dict:
    state, cause, reason = trading.trading_view(instance)
    return {
        "state": state,
        "cause": cause,
        "reason": reason,
        "reason_text": presentation.reason_text(reason),
        "text": presentation.trading_text(state, cause),
        "tone": presentation.TONE.get(state, "idle"),
    }


@login_required
def instance_detail(request, instance_id: str):
    instance = _owned(request, instance_id)
    tab = request.GET.get("tab", "overview")
    if tab not in TABS:
        raise Http404
    context = {
        "tab": tab,
        "instance": instance,
        "trading": trading_context(instance),
        "status_tone": presentation.TONE.get(instance.status, "idle"),
        "actions": presentation.actions_allowed(instance),
        "plan_name": instance.plan.display_name,
        "state_labels": presentation.labels(),
        "domains": instance.domains.all(),
        "cname_target": domains.cname_target(instance),
        "custom_domains_allowed": entitlements_for(request.user).has_feature("custom_domain"),
        "autoscaling": entitlements_for(request.user).has_feature("autoscaling"),
        "scaling_events": instance.events.filter(kind=InstanceEvent.Kind.AUTOSCALED).order_by("-created_at")[:10],
        "regions": settings.QM_REGIONS,
    }
    return render(request, "instances/detail.html", context)


def _domains_tab(instance_id: str):
    return HttpResponseRedirect(reverse("instance_detail", args=[instance_id]) + "?tab=domains")


@login_required
@require_POST
def instance_domains(request, instance_id: str):
    """Add, verify or remove a custom domain (same services as the API)."""
    instance = _owned(request, instance_id)
    action, name = request.POST.get("action"), request.POST.get("domain", "")
    try:
        if action == "add":
            custom = domains.domain_add(instance=instance, domain=name, actor=request.user)
        else:
            custom = instance.domains.filter(domain=name.strip().lower()).first()
            if custom is None:
                raise Http404
            if action == "remove":
                domains.domain_remove(custom=custom, actor=request.user)
                messages.success(request, _("%(domain)s removed.") % {"domain": custom.domain})
                return _domains_tab(instance_id)
            domains.domain_check_enqueue(domain_id=custom.pk)
        messages.success(
            request,
            _("%(domain)s: DNS is being checked; reload this page in a few seconds.") % {"domain": custom.domain},
        )
    except ServiceError as error:
        messages.error(request, error.message)
    return _domains_tab(instance_id)


@login_required
@require_POST
def instance_migrate(request, instance_id: str):
    """Move the instance to another region (same service as the API); its page shows the progress."""
    instance = _owned(request, instance_id)
    try:
        services.instance_migrate(instance=instance, region=request.POST.get("region", ""), actor=request.user)
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("Moving %(instance)s to another region.") % {"instance": instance_id})
    return redirect("instance_detail", instance_id=instance_id)


@login_required
@require_POST
def instance_action(request, instance_id: str, action: str):
    if action not in ACTIONS:
        raise Http404
    instance = _owned(request, instance_id)
    before = (instance.desired_state, instance.status)
    try:
        changed = ACTIONS[action](instance=instance, actor=request.user)
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        if action in ("start", "stop") and (changed.desired_state, changed.status) == before:
            messages.info(request, ACTION_UNCHANGED[action] % {"instance": instance_id})
        else:
            messages.success(request, ACTION_DONE[action] % {"instance": instance_id})
    if action == "delete":
        return redirect("home")
    return redirect("instance_detail", instance_id=instance_id)


def _hand_over(request, instance):
    """Send the owner's browser to the instance URL with a one-time ticket (sessions are per host),
    landing on the engine's status page or, with ?to=config / ?next=/config, its configuration."""
    if instance is None:
        raise Http404
    page = "/config" if request.GET.get("to") == "config" or request.GET.get("next") == "/config" else "/"
    ticket = access.ticket_issue(instance=instance, user=request.user, session_key=request.session.session_key)
    language = "zh-hans" if (request.LANGUAGE_CODE or "").startswith("zh") else "en"
    return HttpResponseRedirect(f"{instance.url}/__quantmesh/login?ticket={ticket}&next={page}&lang={language}")


@login_required
def instance_open(request, instance_id: str):
    return _hand_over(request, selectors.instance_get(owner=request.user, instance_id=instance_id))


@login_required
def instance_open_by_host(request, slug: str):
    """Where a browser without access to an instance host is sent (after the portal's login): the
    owner is handed over; anyone else gets the same 404 as an unknown instance."""
    return _hand_over(request, selectors.instance_list(owner=request.user).filter(slug=slug).first())


def instance_ticket_login(request):
    """On the instance host: trade the ticket for a cookie valid on this host only, then show the engine."""
    slug = access.slug_from_host(request.get_host(), custom_domains=True)
    value = slug and access.ticket_redeem(ticket=request.GET.get("ticket", ""), slug=slug)
    if not value:
        raise Http404
    page = request.GET.get("next", "/")
    response = HttpResponseRedirect(page if page in access.HANDOVER_PAGES else "/")
    response.set_cookie(
        access.INSTANCE_COOKIE,
        value,
        max_age=settings.SESSION_COOKIE_AGE,
        httponly=True,
        secure=request.is_secure(),
        samesite="Lax",
    )
    # The engine's pages speak the console's language (they read this cookie).
    if request.GET.get("lang") in ("en", "zh-hans"):
        response.set_cookie("qm_language", request.GET["lang"], max_age=365 * 86400, samesite="Lax")
    return response
