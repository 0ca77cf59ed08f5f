"""Downloads: the trades as CSV (streamed, filtered by time and symbol) and the config as YAML."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import yaml
from aiohttp import web

from .common import ENGINE_KEY, iso
from .configure import config_view

TRADE_COLUMNS = [
    "time",
    "symbol",
    "side",
    "price",
    "amount",
    "quote_amount",
    "fee",
    "fee_currency",
    "realized_pnl",
    "client_order_id",
    "grid_level",
]


def _time_filter(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps(
                {
                    "error": {
                        "code": "invalid_request",
                        "message": f"{name}: not an ISO-8601 time, e.g. 2025-01-01T00:00:00Z",
                        "details": {name: raw},
                    }
                }
            ),
            content_type="application/json",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


async def export_trades(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE_KEY]
    since, until = _time_filter(request, "since"), _time_filter(request, "until")
    symbol = request.query.get("symbol")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="trades.csv"',
        }
    )
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TRADE_COLUMNS)
    for index, (ts, sym, side, price, amount, fee, fee_currency, pnl, client_id, level) in enumerate(
        engine.store.fills(since=since, until=until, symbol=symbol)
    ):
        writer.writerow(
            [
                iso(ts),
                sym,
                side,
                f"{price:.10g}",
                f"{amount:.10g}",
                f"{price * amount:.10g}",
                f"{fee:.10g}",
                fee_currency,
                f"{pnl:.10g}",
                client_id,
                level,
            ]
        )
        if index % 1000 == 999:
            await response.write(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
    await response.write(buffer.getvalue().encode())
    await response.write_eof()
    return response


async def export_config(request: web.Request) -> web.Response:
    view = config_view(request.app[ENGINE_KEY])
    document = {"config": view["config"], "secrets": view["secrets"]}
    return web.Response(
        text=yaml.safe_dump(document, sort_keys=False),
        content_type="application/yaml",
        headers={"Content-Disposition": 'attachment; filename="config.yaml"'},
    )
