"""Site-wide pages: home, health, error pages."""

from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render

from billing.selectors import entitlements_for, plan_list
from instances import presentation
from instances.selectors import instance_list, instance_list_deleted_with_data
from instances.trading import instances_with_pnl, trading_view
from quantmesh.errors import error_body
from quantmesh.readiness import readiness_checks


def home(request):
    """The dashboard for customers (instances, plan usage); the plans for everyone else."""
    context = {"plans": plan_list()}
    if request.user.is_authenticated:
        context["entitlements"] = entitlements_for(request.user)
        context["instances"] = instances_with_pnl(instance_list(owner=request.user))
        for instance in context["instances"]:
            state, cause, _reason = trading_view(instance)
            instance.trading = {
                "state": state,
                "text": presentation.trading_text(state, cause),
                "tone": presentation.TONE.get(state, "idle"),
            }
            instance.status_tone = presentation.TONE.get(instance.status, "idle")
        context["state_labels"] = presentation.labels()
        context["deleted_instances"] = list(instance_list_deleted_with_data(owner=request.user))
    return render(request, "home.html", context)


def support(request):
    """The manual's support page: contact, the service's status as seen now, the FAQ's answers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database_ok = True
    except DatabaseError:
        database_ok = False
    context = {"database_ok": database_ok}
    if request.user.is_authenticated and database_ok:
        running = instance_list(owner=request.user).filter(desired_state="running")
        context["instances_not_trading"] = sum(trading_view(i)[0] != "trading" for i in running)
    return render(request, "support.html", context)


def healthz(request):
    """Liveness: the process serves requests. It touches no dependency, so a database outage does not
    take the portal out of the proxy (users then get the portal's own 503, not the proxy's 404)."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Readiness: the database, Redis and the Celery broker answer. 503 names the ones that do not."""
    checks = readiness_checks()
    failing = {name: problem for name, problem in checks.items() if problem != "ok"}
    if failing:
        message = "Not ready: " + ", ".join(f"{name} ({problem})" for name, problem in failing.items())
        return JsonResponse(error_body("not_ready", message, checks), status=503, headers={"Retry-After": "5"})
    return JsonResponse({"status": "ok", "checks": checks})


def page_not_found(request, exception=None):
    return render(request, "404.html", status=404)


def server_error(request):
    return HttpResponse(render(request, "500.html").content, status=500)
