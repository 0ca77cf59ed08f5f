"""The JSON API the portal calls: health, status, trading, config, restart, risk, database backup."""

from __future__ import annotations

import json

from aiohttp import web

from ..app import Engine
from .common import ENGINE_KEY, error_response, iso
from .configure import apply_config, config_view


def status_payload(engine: Engine) -> dict:
    symbols = []
    for trader in engine.traders:
        position = trader.position
        price = trader.price or 0.0
        symbols.append(
            {
                "symbol": trader.symbol,
                "price": trader.price,
                "position": position.amount,
                "average_price": position.average_price,
                "realized_pnl": round(position.realized_pnl, 8),
                "unrealized_pnl": round(position.unrealized_pnl(price), 8) if trader.price else 0.0,
                "fees": round(position.fees, 8),
                "volume": round(position.volume, 8),
                "open_orders": len(trader.open),
                "layers": len(trader.strategy.held) if trader.strategy else 0,
                "risk_state": trader.view.state,
                "strategy": trader.strategy_status(),
                "orders_skipped": trader.skipped,
                "last_skip": trader.last_skip,
            }
        )
    config = engine.config
    trading_state, trading_cause, trading_reason = engine.trading_state()
    return {
        "instance_id": engine.platform.instance_id if engine.platform else "local",
        "version": engine.version,
        "state": engine.state,
        "error": engine.error or None,
        "trading_state": trading_state,
        "trading_cause": trading_cause,
        "trading_reason": trading_reason,
        "healthy": engine.healthy(),
        "exchange": config.exchange_id if config else None,
        "testnet": config.exchange.testnet if config else None,
        "symbols": symbols,
        "started_at": iso(engine.started_at),
        "last_tick_at": iso(engine.last_tick_at),
        # The first symbol's strategy (each symbol's is in its entry): what it does now and why.
        "strategy": symbols[0]["strategy"] if symbols else {"kind": config.strategy.kind if config else "grid"},
        # Set when the saved strategy is not what trades: "adaptive strategy not included in the plan: ...".
        "strategy_notice": engine.strategy_notice or None,
        "risk_triggers": {
            k: v for k, v in engine.counters.items() if k in {"rapid_decline", "stop_loss", "daily_loss_limit"}
        },
    }


async def healthz(request: web.Request) -> web.Response:
    """200 while the trading loop ticks; 503 otherwise (including a config or key error, which the
    body names: the engine is alive and serving, but not trading)."""
    engine = request.app[ENGINE_KEY]
    healthy = engine.healthy()
    trading_state, trading_cause, _ = engine.trading_state()
    body = {
        "status": "ok" if healthy else engine.state,
        "last_tick_at": iso(engine.last_tick_at),
        "trading_state": trading_state,
        "trading_cause": trading_cause,
    }
    if engine.error:
        body["error"] = engine.error
    warnings = _warnings(engine)
    if warnings:
        body["warnings"] = warnings
    return web.json_response(body, status=200 if healthy else 503)


def _warnings(engine: Engine) -> list[str]:
    """What keeps a running engine from trading as configured: a strategy the plan lacks, risk
    pauses and skipped orders."""
    warnings = [engine.strategy_notice] if engine.strategy_notice else []
    for trader in engine.traders:
        if trader.view.state != "ok":
            warnings.append(
                f"{trader.symbol}: buying paused by risk control ({trader.view.state}); "
                "stops stay until cleared on the config page (POST /api/risk/clear)"
            )
        if trader.last_skip:
            warnings.append(f"{trader.symbol}: {trader.skipped} order(s) skipped; last: {trader.last_skip}")
    return warnings


async def api_status(request: web.Request) -> web.Response:
    return web.json_response(status_payload(request.app[ENGINE_KEY]))


FILLS_LIMIT_MAX = 500


async def api_trading(request: web.Request) -> web.Response:
    """The status with each symbol's open grid orders and recent fills (newest first, `?fills=N`,
    at most 500), for the portal's trading charts and tables."""
    engine = request.app[ENGINE_KEY]
    try:
        limit = int(request.query.get("fills", "100"))
    except ValueError:
        return error_response(
            400, "invalid_request", "fills: a whole number from 1 to 500.", fills=request.query["fills"]
        )
    if not 1 <= limit <= FILLS_LIMIT_MAX:
        return error_response(400, "invalid_request", "fills: a whole number from 1 to 500.", fills=limit)
    payload = status_payload(engine)
    traders = {t.symbol: t for t in engine.traders}
    for entry in payload["symbols"]:
        trader = traders[entry["symbol"]]
        entry["orders"] = [
            {"side": o.side, "level": o.level, "price": o.price, "amount": o.amount} for o in trader.open_orders()
        ]
        entry["fills"] = [
            {"time": iso(ts), "side": side, "price": price, "amount": amount, "fee": fee, "realized_pnl": pnl}
            for ts, _symbol, side, price, amount, fee, _currency, pnl, _client, _level in engine.store.fills(
                symbol=entry["symbol"], limit=limit, newest_first=True
            )
        ]
    return web.json_response(payload)


async def api_config_get(request: web.Request) -> web.Response:
    return web.json_response(config_view(request.app[ENGINE_KEY]))


async def api_config_put(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error_response(400, "malformed_request", "The body must be JSON.")
    if not isinstance(body, dict) or not set(body) <= {"config", "secrets"}:
        return error_response(400, "invalid_request", 'Send {"config": {...}, "secrets": {...}}.')
    errors = await apply_config(engine, body.get("config"), body.get("secrets"))
    if errors:
        return error_response(400, "invalid_config", errors[0], errors=errors)
    return web.json_response(config_view(engine))


async def api_risk_clear(request: web.Request) -> web.Response:
    """Clear the stored risk stops (stop-loss, daily loss limit, rapid decline): buying resumes."""
    engine = request.app[ENGINE_KEY]
    return web.json_response({"cleared": engine.clear_risk()})


async def api_restart(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    await engine.restart()
    return web.json_response({"state": engine.state})


async def backup_database(request: web.Request) -> web.Response:
    """The database as of now, consistent, for the portal's backups."""
    engine = request.app[ENGINE_KEY]
    return web.Response(body=engine.store.snapshot(), content_type="application/vnd.sqlite3")
