"""The console's Strategy tab of an instance: what the adaptive strategy is, the advisor's runs with
their report (charts drawn by static/js/strategy.js from the API), and Apply. Every action goes
through the same services as the API."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _

from billing.selectors import entitlements_for
from instances import selectors as instance_selectors
from quantmesh.errors import ServiceError

from . import gating, selectors, services
from .api.serializers import CSV_MAX_CHARS

RUNS_SHOWN = 10


def plan_refusal_text(user) -> str:
    """The console's words for a plan without the feature, naming the plan that has it."""
    needed = gating.plan_with_ai_strategy()
    rights = entitlements_for(user)
    values = {
        "feature": gating.FEATURE_NAME,
        "plan": needed.display_name if needed else "—",
        "current": rights.plan.display_name if rights.plan else _("no plan"),
    }
    if rights.trial:
        return _("%(feature)s comes with the %(plan)s plan and above; you are on the free trial.") % values
    return _("%(feature)s comes with the %(plan)s plan and above; your plan: %(current)s.") % values


def _candidate_rows(report: dict) -> list[dict]:
    rows = []
    for index, candidate in enumerate(report["candidates"]):
        strategy = candidate["strategy"]
        rows.append(
            {
                "index": index,
                "kind": candidate["kind"],
                "interval": (strategy.get("grid") or {}).get("price_interval"),
                "spread": strategy.get("spread"),
                "test": candidate["test"],
                "train": candidate["train"],
                "recommended": index == report["recommended"],
            }
        )
    return rows


def _baseline(report: dict) -> dict | None:
    """The fixed grid the instance trades now, among the candidates (for comparing the recommendation)."""
    interval = (report.get("current_grid") or {}).get("price_interval")
    for candidate in report["candidates"]:
        if (
            candidate["kind"] == services.GRID
            and (candidate["strategy"].get("grid") or {}).get("price_interval") == interval
        ):
            return candidate
    return None


def _start(request, instance):
    upload = request.FILES.get("csv")
    csv_text = ""
    if upload is not None:
        if upload.size > CSV_MAX_CHARS:
            raise ServiceError(code="invalid_csv", message=_("The CSV file is larger than 1 MB."))
        try:
            csv_text = upload.read().decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise ServiceError(code="invalid_csv", message=_("The CSV file is not UTF-8 text.")) from error
    try:
        seed = int(request.POST.get("seed") or 42)
        candles = int(request.POST.get("candles") or services.MAX_CANDLES)
    except ValueError as error:
        raise ServiceError(code="invalid_request", message=_("Seed and candles must be whole numbers.")) from error
    if not services.MIN_CANDLES <= candles <= services.MAX_CANDLES:
        raise ServiceError(code="invalid_request", message=_("Candles: from 500 to 10,000."))
    return services.advice_run_start(
        instance=instance,
        actor=request.user,
        symbol=request.POST.get("symbol", "").strip() or None,
        candles=candles,
        seed=seed,
        csv_text=csv_text,
    )


@login_required
def instance_strategy(request, instance_id: str):
    instance = instance_selectors.instance_get(owner=request.user, instance_id=instance_id)
    if instance is None or instance.status in (instance.Status.DELETED, instance.Status.DELETING):
        raise Http404
    allowed = gating.ai_strategy_allowed(request.user)
    here = reverse("instance_strategy", args=[instance_id])
    refused = None
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "start":
                run = _start(request, instance)
                return redirect(f"{here}?run={run.run_id}")
            if action == "apply":
                run = selectors.advice_run_get(instance=instance, run_id=request.POST.get("run_id", ""))
                if run is None:
                    raise Http404
                index = request.POST.get("candidate")
                services.advice_apply(run=run, actor=request.user, candidate=int(index) if index else None)
                messages.success(
                    request,
                    _("Applied: %(instance)s restarts its traders with the new strategy.") % {"instance": instance_id},
                )
                return redirect(f"{here}?run={run.run_id}")
            raise Http404
        except ServiceError as error:
            if error.status != 403:
                messages.error(request, error.message)
                return redirect(here)
            refused = plan_refusal_text(request.user)
    runs = list(selectors.advice_run_list(instance=instance)[:RUNS_SHOWN])
    wanted = request.GET.get("run")
    run = next((r for r in runs if r.run_id == wanted), None) if wanted else (runs[0] if runs else None)
    if wanted and run is None:
        run = selectors.advice_run_get(instance=instance, run_id=wanted)
    report = run.report if run is not None and run.status == run.Status.DONE else None
    context = {
        "tab": "strategy",
        "instance": instance,
        "allowed": allowed,
        "refusal": refused or ("" if allowed else plan_refusal_text(request.user)),
        "feature_name": gating.FEATURE_NAME,
        "notice": selectors.strategy_notice(instance=instance),
        "runs": runs,
        "run": run,
        "report": report,
        "candidates": _candidate_rows(report) if report else [],
        "recommended": report["candidates"][report["recommended"]] if report else None,
        "baseline": _baseline(report) if report else None,
        "max_candles": services.MAX_CANDLES,
    }
    return render(request, "strategies/instance_strategy.html", context, status=403 if refused else 200)
