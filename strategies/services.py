"""Every write of the strategies app: start an advisor run, carry it out (in a worker), apply its
recommendation, and move adaptive instances back to the grid when the plan no longer includes it.

The advisor itself is the engine package's (`quantmesh_engine.advisor`): the portal fetches the
candles and the instance's configuration from its engine, hands them over, and keeps the report.
A recommendation is applied as a configuration change through the engine's own validation
(`PUT /api/config`), the same path as any other config change."""

from __future__ import annotations

import copy
import logging
import secrets
import time
from urllib.parse import urlencode

from django.db import transaction
from django.utils import timezone
from quantmesh_engine.advisor import Candle, advise, candles_from_csv
from quantmesh_engine.backtest import Simulation, candle_ticks
from quantmesh_engine.config import parse_config

from billing.signals import customer_notice
from instances import engine_client
from instances.events import instance_event_record
from instances.models import Instance, InstanceEvent
from instances.runtime import get_backend
from quantmesh.errors import ServiceError
from quantmesh.tasks import enqueue_on_commit

from . import tasks
from .gating import ADAPTIVE, ai_strategy_allowed, ai_strategy_require
from .models import AdviceRun

Kind = InstanceEvent.Kind

logger = logging.getLogger(__name__)

MIN_CANDLES = 500  # the advisor's own minimum (it raises ValueError below it)
MAX_CANDLES = 10_000  # what the engine's /api/candles answers at most
CANDLES_TIMEOUT_SECONDS = 60.0  # a live exchange's fetch_ohlcv pages through its history
CONFIG_TIMEOUT_SECONDS = 30.0  # a config write restarts the engine's traders before it answers
PROGRESS_EVERY_SECONDS = 0.25
PRICE_POINTS = 1500  # the price path kept for the chart, thinned to at most this many points
GRID = "grid"


def _engine(instance: Instance, path: str, *, timeout: float, method: str = "GET", body=None):
    return engine_client.engine_request(
        instance, path, backend=get_backend(), timeout=timeout, method=method, json_body=body
    )


def _require_running(instance: Instance) -> None:
    if instance.status != Instance.Status.RUNNING or instance.desired_state != Instance.Desired.RUNNING:
        raise ServiceError(
            code="instance_not_running",
            message=f"{instance.instance_id} is {instance.status}: start it first (the advisor reads its "
            "configuration and market data from its engine).",
            status=409,
        )


def engine_config(instance: Instance) -> dict:
    """The instance's configuration as its engine holds it (secrets stay there)."""
    reply = _engine(instance, "/api/config", timeout=5.0)
    if reply is None or reply.status != 200:
        raise ServiceError(
            code="engine_unavailable",
            message=f"The engine of {instance.instance_id} did not give its configuration; check that it runs.",
            status=409,
        )
    return reply.json()["config"]


def _parse_csv(text: str) -> list:
    try:
        candles = candles_from_csv(text)
    except ValueError as error:
        raise ServiceError(code="invalid_csv", message=f"csv: {error}", details={"csv": [str(error)]}) from error
    if len(candles) < MIN_CANDLES:
        message = f"csv: {len(candles)} candles; the advisor needs at least {MIN_CANDLES}."
        raise ServiceError(code="invalid_csv", message=message, details={"csv": [message]})
    return candles


def advice_run_start(
    *,
    instance: Instance,
    actor,
    symbol: str | None = None,
    candles: int = MAX_CANDLES,
    seed: int = 42,
    train_fraction: float = 0.7,
    fee_rate: float | None = None,
    csv_text: str = "",
) -> AdviceRun:
    """Queue an advisor run on the instance's own market data (or on `csv_text`, the customer's
    candles: ts,open,high,low,close,volume). Refused (403, naming the plan) without `ai_strategy`."""
    ai_strategy_require(user=instance.owner)
    _require_running(instance)
    if csv_text:
        _parse_csv(csv_text)  # bad input is answered now, not found later by the worker
    params = {
        "symbol": symbol,
        "limit": candles,
        "timeframe": "1m",
        "seed": seed,
        "train_fraction": train_fraction,
        "fee_rate": fee_rate,
    }
    with transaction.atomic():
        run = AdviceRun.objects.create(
            run_id=f"adv-{secrets.token_hex(6)}",
            instance=instance,
            requested_by=actor,
            params=params,
            uploaded_csv=csv_text,
            source=AdviceRun.Source.UPLOAD if csv_text else "",
        )
        instance_event_record(
            instance=instance, kind=Kind.ADVICE_REQUESTED, actor=actor, from_status=instance.status, run_id=run.run_id
        )
        _enqueue_run(run.run_id)
    return run


def _enqueue_run(run_id: str) -> None:
    enqueue_on_commit(tasks.advice_run, run_id)


def _engine_candles(run: AdviceRun, symbol: str) -> tuple[str, list]:
    query = urlencode({"symbol": symbol, "timeframe": run.params.get("timeframe", "1m"), "limit": run.params["limit"]})
    reply = _engine(run.instance, f"/api/candles?{query}", timeout=CANDLES_TIMEOUT_SECONDS)
    if reply is None:
        raise ValueError("the engine did not answer for its candles; check that the instance runs")
    if reply.status != 200:
        try:
            why = reply.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            why = f"HTTP {reply.status}"
        raise ValueError(f"the engine could not give its candles: {why}")
    body = reply.json()
    return body["source"], [Candle(*row[:6]) for row in body["candles"]]


def _thinned_prices(candles: list) -> list[list[float]]:
    step = max(1, len(candles) // PRICE_POINTS)
    return [[c.ts, c.close] for c in candles[::step]]


def advice_run_execute(*, run_id: str) -> AdviceRun | None:
    """Carry a queued run out (a worker calls this). Idempotent: a finished run is left as it is; a
    run whose worker died is carried out again from the start (the advisor is deterministic)."""
    run = AdviceRun.objects.select_related("instance").filter(run_id=run_id).first()
    if run is None or run.finished:
        return run
    AdviceRun.objects.filter(pk=run.pk).update(status=AdviceRun.Status.RUNNING, started_at=timezone.now())
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= PROGRESS_EVERY_SECONDS:
            last[0] = now
            AdviceRun.objects.filter(pk=run.pk).update(progress_done=done, progress_total=total)

    params = run.params
    try:
        config = engine_config(run.instance)
        symbol = params.get("symbol") or (config.get("symbols") or ["BTC/USDT"])[0]
        if run.uploaded_csv:
            source, candles = AdviceRun.Source.UPLOAD, _parse_csv(run.uploaded_csv)
        else:
            source, candles = _engine_candles(run, symbol)
        fee_rate = params.get("fee_rate")
        if fee_rate is None:
            fee_rate = float(config.get("paper", {}).get("fee_rate", 0.001))
        report = advise(
            candles,
            config=config,
            symbol=symbol,
            fee_rate=fee_rate,
            seed=int(params.get("seed", 42)),
            train_fraction=float(params.get("train_fraction", 0.7)),
            progress=progress,
        ).to_dict()
    except (ValueError, ServiceError) as error:
        message = error.message if isinstance(error, ServiceError) else str(error)
        return _finish(run, status=AdviceRun.Status.FAILED, error=message[:500])
    report["symbol"] = symbol
    report["prices"] = _thinned_prices(candles)
    report["current_strategy"] = config.get("strategy") or {"kind": GRID}
    report["current_grid"] = config.get("grid", {})
    report["levels"] = _levels(report, candles, config, fee_rate)
    return _finish(run, status=AdviceRun.Status.DONE, source=source, report=report)


def _best(report: dict, kind: str) -> dict | None:
    """The recommendation when it is of `kind`, else the best candidate of `kind` on the train part."""
    candidates = report["candidates"]
    if candidates[report["recommended"]]["kind"] == kind:
        return candidates[report["recommended"]]
    of_kind = [c for c in candidates if c["kind"] == kind]
    return max(of_kind, key=lambda c: c["train"]["pnl_after_fees"], default=None)


def _levels(report: dict, candles: list, config: dict, fee_rate: float) -> dict:
    """What the chart draws over the held-out price: the fixed grid's levels (the instance's own
    interval when it is a candidate, else the best grid's) and the adaptive grid's interval at each
    candle close, replayed by the engine's backtester for the best adaptive candidate."""
    split = next(i for i, c in enumerate(candles) if c.ts >= report["split_ts"])
    layers = int(config.get("grid", {}).get("buy_window", 5))
    interval_now = config.get("grid", {}).get("price_interval")
    grids = [c for c in report["candidates"] if c["kind"] == GRID]
    fixed = next((c for c in grids if c["strategy"]["grid"]["price_interval"] == interval_now), None) or _best(
        report, GRID
    )
    levels: dict = {"fixed": None, "adaptive": []}
    if fixed is not None:
        interval = fixed["strategy"]["grid"]["price_interval"]
        levels["fixed"] = {"center": candles[split].close, "interval": interval, "layers": layers}
    adaptive = _best(report, ADAPTIVE)
    if adaptive is not None:
        engine_config = parse_config(config_with_strategy(config, adaptive["strategy"]))
        ticks = candle_ticks(candles[split:])
        run = Simulation(engine_config, symbol="BASE/QUOTE", fee_rate=fee_rate).run(ticks, record=True)
        step = max(1, len(ticks.closes) // PRICE_POINTS)
        levels["adaptive"] = [
            [candles[split + n].ts, run.intervals[index]] for n, index in enumerate(ticks.closes) if n % step == 0
        ]
    return levels


def _finish(run: AdviceRun, *, status: str, **fields) -> AdviceRun:
    with transaction.atomic():
        run = AdviceRun.objects.select_for_update().select_related("instance").get(pk=run.pk)
        for name, value in {"status": status, "finished_at": timezone.now(), **fields}.items():
            setattr(run, name, value)
        written = ["status", "finished_at", *fields]
        if status == AdviceRun.Status.DONE:
            run.progress_done = run.progress_total = max(run.progress_total, len(run.report["candidates"]))
            written += ["progress_done", "progress_total"]
        run.save(update_fields=written)
        kind = Kind.ADVICE_FINISHED if status == AdviceRun.Status.DONE else Kind.ADVICE_FAILED
        detail = {"run_id": run.run_id}
        if run.error:
            detail["reason"] = run.error
        instance_event_record(instance=run.instance, kind=kind, from_status=run.instance.status, **detail)
    return run


def config_with_strategy(config: dict, patch: dict) -> dict:
    """`config` with a candidate's patch applied: the patch is the `strategy:` section; a grid
    candidate also carries its grid values (`grid: {...}`), merged into the `grid:` section."""
    changed = copy.deepcopy(config)
    patch = copy.deepcopy(patch)
    grid_values = patch.pop("grid", None)
    changed["strategy"] = patch
    if grid_values:
        changed["grid"] = {**changed.get("grid", {}), **grid_values}
    return changed


def _config_write(instance: Instance, config: dict) -> None:
    """A configuration change through the engine's validation; its errors are the customer's."""
    reply = _engine(instance, "/api/config", timeout=CONFIG_TIMEOUT_SECONDS, method="PUT", body={"config": config})
    if reply is None:
        raise ServiceError(
            code="engine_unavailable",
            message=f"The engine of {instance.instance_id} did not answer; check that it runs.",
            status=409,
        )
    if reply.status != 200:
        try:
            error = reply.json()["error"]
        except (ValueError, KeyError, TypeError):
            error = {"message": f"the engine answered HTTP {reply.status}", "details": {}}
        raise ServiceError(
            code="invalid_config",
            message=f"The engine refused the configuration: {error['message']}",
            details={"errors": error.get("details", {}).get("errors", [error["message"]])},
        )


def advice_apply(*, run: AdviceRun, actor, candidate: int | None = None) -> AdviceRun:
    """Apply the recommendation (or the chosen candidate) to the instance: one config change."""
    if run.status != AdviceRun.Status.DONE:
        raise ServiceError(
            code="advice_not_ready", message=f"{run.run_id} is {run.status}; nothing to apply.", status=409
        )
    candidates = run.report["candidates"]
    index = run.report["recommended"] if candidate is None else candidate
    if not 0 <= index < len(candidates):
        message = f"candidate: {index} is not a candidate of {run.run_id} (0 to {len(candidates) - 1})."
        raise ServiceError(code="invalid_request", message=message, details={"candidate": [message]})
    chosen = candidates[index]
    if chosen["kind"] == ADAPTIVE:
        ai_strategy_require(user=run.instance.owner)
    instance = run.instance
    _require_running(instance)
    _config_write(instance, config_with_strategy(engine_config(instance), chosen["strategy"]))
    with transaction.atomic():
        run.applied_candidate, run.applied_at = index, timezone.now()
        run.save(update_fields=["applied_candidate", "applied_at"])
        instance_event_record(
            instance=instance,
            kind=Kind.STRATEGY_APPLIED,
            actor=actor,
            from_status=instance.status,
            run_id=run.run_id,
            candidate=index,
            strategy=chosen["kind"],
        )
    return run


def strategy_revert_to_grid(*, instance: Instance, reason: str) -> bool | None:
    """Move an adaptive instance back to the grid (its plan no longer includes the adaptive strategy),
    with an event and a notice to the customer. True: moved; False: it was not adaptive; None: its
    engine did not answer (it is checked again when it next comes up). Idempotent."""
    try:
        config = engine_config(instance)
    except ServiceError:
        return None
    if (config.get("strategy") or {}).get("kind") != ADAPTIVE:
        return False
    try:
        _config_write(instance, config_with_strategy(config, {"kind": GRID}))
    except ServiceError as error:
        logger.warning("could not move %s back to the grid: %s", instance.instance_id, error.message)
        return None
    message = (
        f"{instance.instance_id} used the adaptive strategy, which your plan no longer includes ({reason}). "
        "It now trades the fixed grid with its grid settings; upgrade to use the adaptive strategy again."
    )
    with transaction.atomic():
        instance_event_record(
            instance=instance, kind=Kind.STRATEGY_REVERTED, from_status=instance.status, reason=message, to="grid"
        )
        transaction.on_commit(
            lambda: customer_notice.send(
                sender=AdviceRun,
                user=instance.owner,
                subject=f"{instance.instance_id} moved back to the grid strategy",
                message=message,
            )
        )
    return True


def strategies_enforce_plan(*, owner, reason: str) -> list[str]:
    """Every running instance of `owner` off the adaptive strategy when the plan lacks it. Returns
    the ids moved back to the grid."""
    if ai_strategy_allowed(owner):
        return []
    running = Instance.objects.filter(owner=owner, status=Instance.Status.RUNNING).select_related("owner")
    return [i.instance_id for i in running if strategy_revert_to_grid(instance=i, reason=reason)]
