"""Prometheus text format on /metrics: the engine's trading figures per symbol."""

from __future__ import annotations

from aiohttp import web

from .common import ENGINE_KEY


def label_value(value) -> str:
    """A Prometheus label value in the text format: backslash, double quote and newline escaped, so
    no value can close its label set and start a series of its own."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def metrics(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    lines = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict, float]]):
        lines.append(f"# HELP quantmesh_engine_{name} {help_text}")
        lines.append(f"# TYPE quantmesh_engine_{name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{label_value(v)}"' for k, v in labels.items())
            lines.append(
                f"quantmesh_engine_{name}{{{label_text}}} {value}" if label_text else f"quantmesh_engine_{name} {value}"
            )

    traders = engine.traders
    per = lambda getter: [({"symbol": t.symbol}, getter(t)) for t in traders]  # noqa: E731
    metric("up", "gauge", "1 while the trading loop runs.", [({}, 1 if engine.state == "running" else 0)])
    metric("price", "gauge", "Last price.", per(lambda t: t.price or 0))
    metric("open_orders", "gauge", "Orders resting on the exchange.", per(lambda t: len(t.open)))
    metric("fills_total", "counter", "Fills booked.", per(lambda t: t.position.fills))
    metric("volume_quote_total", "counter", "Traded volume in quote currency.", per(lambda t: t.position.volume))
    metric("fees_quote_total", "counter", "Fees paid in quote currency.", per(lambda t: t.position.fees))
    metric("realized_pnl_quote", "gauge", "Realised PnL, fees included.", per(lambda t: t.position.realized_pnl))
    metric(
        "unrealized_pnl_quote",
        "gauge",
        "Unrealised PnL at the last price.",
        per(lambda t: t.position.unrealized_pnl(t.price) if t.price else 0),
    )
    metric("position_base", "gauge", "Position in base currency.", per(lambda t: t.position.amount))
    metric("risk_paused", "gauge", "1 while risk control pauses buys.", per(lambda t: 0 if t.view.state == "ok" else 1))
    metric(
        "orders_skipped_total",
        "counter",
        "Orders not sent because they were below the exchange's minimum.",
        per(lambda t: t.skipped),
    )
    metric(
        "risk_triggers_total",
        "counter",
        "Risk control triggers.",
        [({"rule": rule}, engine.counters[rule]) for rule in ("rapid_decline", "stop_loss", "daily_loss_limit")],
    )
    metric(
        "last_heartbeat_timestamp_seconds",
        "gauge",
        "Time of the last trading-loop tick.",
        [({}, engine.last_tick_at or 0)],
    )
    return web.Response(
        text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8", headers={"Cache-Control": "no-store"}
    )
