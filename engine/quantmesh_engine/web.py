"""The engine's HTTP side on port 8080: its web page, config page, JSON API, exports, metrics.

Only the portal's proxy may call it: every request but /healthz must carry the per-instance
secret from platform.yaml in X-QuantMesh-Proxy-Secret.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import html
import io
import json
import time
from datetime import UTC, datetime
from secrets import token_hex

import yaml
from aiohttp import web

from . import pages_i18n
from .app import Engine
from .config import ConfigError, parse_config, save_config
from .secrets import FIELDS, ExchangeSecrets, mask

PROXY_SECRET_HEADER = "X-QuantMesh-Proxy-Secret"  # noqa: S105 (a header name)
ENGINE_KEY = web.AppKey("engine", Engine)
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


def label_value(value) -> str:
    """A Prometheus label value in the text format: backslash, double quote and newline escaped, so
    no value can close its label set and start a series of its own."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_response(status: int, code: str, message: str, **details) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return web.json_response(body, status=status)


@web.middleware
async def proxy_secret_required(request: web.Request, handler):
    if request.path == "/healthz":
        return await handler(request)
    engine = request.app[ENGINE_KEY]
    expected = engine.proxy_secret
    if expected is None:
        if engine.insecure:
            return await handler(request)
        return error_response(401, "no_proxy_secret", "This engine has no platform.yaml: it accepts no requests.")
    given = request.headers.get(PROXY_SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return error_response(401, "unauthorized", "Requests must come through the QuantMesh portal.")
    return await handler(request)


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
    """What keeps a running engine from trading as configured: risk pauses and skipped orders."""
    warnings = []
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


def _config_view(engine: Engine) -> dict:
    try:
        config = engine.load_config().to_dict()
        problems = []
    except ConfigError as error:
        config = yaml.safe_load(engine.config_path.read_text()) if engine.config_path.exists() else {}
        problems = error.errors
    return {
        "config": config,
        "secrets": engine.secrets().masked(),
        "errors": problems,
        "max_trading_pairs": engine.max_trading_pairs,
    }


async def api_config_get(request: web.Request) -> web.Response:
    return web.json_response(_config_view(request.app[ENGINE_KEY]))


def _merge_secrets(current: ExchangeSecrets, given: dict | None) -> ExchangeSecrets:
    """New values replace old ones; an empty or masked value (`****abcd`) keeps what is stored."""
    if not given:
        return current
    values = {}
    for name in FIELDS:
        value = given.get(name)
        if value is None or value == "" or (isinstance(value, str) and value.startswith("****")):
            values[name] = getattr(current, name)
        elif not isinstance(value, str) or len(value) > 512:
            raise ConfigError([f"secrets.{name}: must be a string of at most 512 characters"])
        else:
            values[name] = value.strip()
    return ExchangeSecrets(**values)


async def apply_config(engine: Engine, config_data, secrets_data) -> list[str]:
    """Validate, save and restart; returns the errors (nothing is saved when there are any)."""
    try:
        unknown = [k for k in (secrets_data or {}) if k not in FIELDS]
        if unknown:
            raise ConfigError([f"secrets.{k}: unknown field" for k in unknown])
        config = parse_config(config_data, max_trading_pairs=engine.max_trading_pairs, paper_only=engine.paper_only)
        problems = engine.money_problems(config)
        if problems:
            raise ConfigError(problems)
        secrets = _merge_secrets(engine.secrets(), secrets_data)
        if not config.is_paper and not secrets.present:
            raise ConfigError([f"secrets.api_key: {config.exchange.name} needs an API key and secret"])
    except ConfigError as error:
        return error.errors
    engine.secret_store.save(secrets)
    save_config(engine.config_path, config)
    await engine.restart()
    return []


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
    return web.json_response(_config_view(engine))


async def api_risk_clear(request: web.Request) -> web.Response:
    """Clear the stored risk stops (stop-loss, daily loss limit, rapid decline): buying resumes."""
    engine = request.app[ENGINE_KEY]
    return web.json_response({"cleared": engine.clear_risk()})


async def page_risk_clear(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    if _forged_form(request, engine, await request.post()):
        return _csrf_refused()
    engine.clear_risk()
    raise web.HTTPSeeOther("/config")


async def api_restart(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    await engine.restart()
    return web.json_response({"state": engine.state})


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
    view = _config_view(request.app[ENGINE_KEY])
    document = {"config": view["config"], "secrets": view["secrets"]}
    return web.Response(
        text=yaml.safe_dump(document, sort_keys=False),
        content_type="application/yaml",
        headers={"Content-Disposition": 'attachment; filename="config.yaml"'},
    )


async def backup_database(request: web.Request) -> web.Response:
    """The database as of now, consistent, for the portal's backups."""
    engine = request.app[ENGINE_KEY]
    return web.Response(body=engine.store.snapshot(), content_type="application/vnd.sqlite3")


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


# --- pages ---------------------------------------------------------------------------------

STYLESHEET = """body{font-family:system-ui,-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;margin:0;
color:#111827;background:#f9fafb;line-height:1.5}header{background:#0f172a;color:#e5e7eb;padding:12px 16px;display:flex;
flex-wrap:wrap;gap:6px 16px;align-items:center}header a{color:#93c5fd}main{max-width:1000px;margin:0 auto;padding:16px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:16px;margin-bottom:16px;overflow-wrap:anywhere}
table{width:100%;border-collapse:collapse}td,th{text-align:left;padding:4px 8px;border-bottom:1px solid #e5e7eb;
font-variant-numeric:tabular-nums}.error{color:#b91c1c}.ok{color:#047857}.muted{color:#4b5563}
label{display:block;margin-top:10px}input{padding:6px;width:100%;max-width:380px;box-sizing:border-box}
input[type=checkbox]{width:auto}button{margin-top:14px;padding:8px 16px;background:#1d4ed8;color:#fff;border:0;
border-radius:6px;font-size:1rem}dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px}dd{margin:0}
.badge{display:inline-block;padding:2px 10px;border-radius:999px;border:1px solid;font-weight:600}
.tone-good{color:#065f46;background:#ecfdf5}.tone-warn{color:#92400e;background:#fffbeb}
.tone-bad{color:#991b1b;background:#fef2f2}.tone-idle{color:#374151;background:#f3f4f6}
@media (max-width:640px){thead{display:none}
tr{display:block;border:1px solid #e5e7eb;border-radius:6px;margin-bottom:6px}
td{display:grid;grid-template-columns:40% 1fr;border:0}td::before{content:attr(data-label);color:#4b5563}}
"""
PAGE = """<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title} · {product}</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/engine.css"></head>
<body><header><strong>{product}</strong> <span>{instance}</span>{back}
<a href="/">{status}</a><a href="/config">{configuration}</a></header>
<main>{body}</main></body></html>"""
STATE_WORDS = {
    "trading": ("Trading", "good"),
    "paused": ("Paused by risk control", "warn"),
    "error": ("Not trading", "bad"),
    "starting": ("Starting", "idle"),
    "stopped": ("Stopped", "idle"),
}
# The pages run no script and load nothing but their own stylesheet; forms post to themselves; never framed.
CSP = "; ".join(
    [
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self' data:",  # the empty data: favicon (no /favicon.ico request)
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CSRF_FIELD = "csrf_token"
CSRF_MAX_AGE = 3600
LOCAL_CSRF_KEY = token_hex(32)  # an engine run without platform.yaml (local development)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def _csrf_mac(engine: Engine, issued: int) -> str:
    key = (engine.proxy_secret or LOCAL_CSRF_KEY).encode()
    return hmac.new(key, f"config-form:{issued}".encode(), hashlib.sha256).hexdigest()


def csrf_token(engine: Engine) -> str:
    """A token for the config form: only a page served to the owner (through the portal) carries
    one; another site can neither read nor make it. Valid for CSRF_MAX_AGE seconds."""
    issued = int(time.time())
    return f"{issued}.{_csrf_mac(engine, issued)}"


def csrf_valid(engine: Engine, token: str) -> bool:
    issued, _, mac = (token or "").partition(".")
    if not issued.isdigit() or not 0 <= time.time() - int(issued) <= CSRF_MAX_AGE:
        return False
    return hmac.compare_digest(mac.encode(), _csrf_mac(engine, int(issued)).encode())


def _forged_form(request: web.Request, engine: Engine, form) -> bool:
    """A form post sent from another site, or without a fresh token from this engine's own page."""
    cross_site = request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none")
    return cross_site or not csrf_valid(engine, str(form.get(CSRF_FIELD, "")))


def _csrf_refused() -> web.Response:
    return error_response(403, "csrf_failed", "The form is stale or came from another site: reload the page.")


def _language(request: web.Request) -> str:
    return pages_i18n.language(request.cookies.get("qm_language"), request.headers.get("Accept-Language"))


def _page(request: web.Request, title: str, body: str) -> web.Response:
    engine = request.app[ENGINE_KEY]
    lang = _language(request)
    t = lambda text: html.escape(pages_i18n.translate(text, lang))  # noqa: E731
    console = engine.platform.console_url if engine.platform else ""
    text = PAGE.format(
        lang="zh-hans" if lang == "zh" else "en",
        title=t(title),
        product=t("QuantMesh engine"),
        body=body,
        instance=html.escape(engine.platform.instance_id if engine.platform else "local"),
        back=f'<a href="{html.escape(console)}">← {t("Back to the console")}</a>' if console else "",
        status=t("Status"),
        configuration=t("Configuration"),
    )
    return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})


async def stylesheet(request: web.Request) -> web.Response:
    return web.Response(text=STYLESHEET, content_type="text/css", headers={"Cache-Control": "max-age=3600"})


def _amount(value: float | None, digits: int = 8) -> str:
    """Numbers people read: no float noise (30095.817744871787 → 30,095.82 for prices)."""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}".rstrip("0").rstrip(".") if digits > 2 else f"{value:,.2f}"


async def page_status(request: web.Request) -> web.Response:
    """What the engine is doing now (the console has the charts and history): no automatic reload."""
    engine = request.app[ENGINE_KEY]
    lang = _language(request)
    t = lambda text: html.escape(pages_i18n.translate(text, lang))  # noqa: E731
    status = status_payload(engine)
    e = html.escape
    words, tone = STATE_WORDS.get(status["trading_state"], (status["trading_state"], "idle"))
    parts = [f'<div class="card"><h1>{t("Status")}{t(": ")}<span class="badge tone-{tone}">{t(words)}</span></h1>']
    if status["trading_reason"]:
        parts.append(f"<p><code>{e(status['trading_reason'])}</code></p>")
    if status["trading_state"] in ("error", "paused"):
        parts.append(f'<p><a href="/config">{t("Fix the configuration")}</a></p>')
    tick = status["last_tick_at"]
    parts.append(
        f"<dl><dt>{t('Exchange')}</dt><dd>{e(str(status['exchange'] or '—'))}</dd>"
        f"<dt>{t('Last tick')}</dt><dd>{e(tick[:19].replace('T', ' ') + ' UTC' if tick else '—')}</dd></dl>"
        f'<p class="muted">{t("This page shows the engine as it is now; the console shows charts and history.")}</p>'
        "</div>"
    )
    for s in status["symbols"]:
        risk = t("OK") if s["risk_state"] == "ok" else e(s["risk_state"])
        parts.append(
            f'<div class="card"><h2>{e(s["symbol"])}</h2><dl>'
            f"<dt>{t('Price')}</dt><dd>{_amount(s['price'], 2)}</dd>"
            f"<dt>{t('Position')}</dt><dd>{_amount(s['position'])}</dd>"
            f"<dt>{t('Realised PnL')}</dt><dd>{_amount(s['realized_pnl'], 2)}</dd>"
            f"<dt>{t('Unrealised PnL')}</dt><dd>{_amount(s['unrealized_pnl'], 2)}</dd>"
            f"<dt>{t('Fees')}</dt><dd>{_amount(s['fees'], 2)}</dd><dt>{t('Risk')}</dt><dd>{risk}</dd></dl>"
        )
        trader = next(tr for tr in engine.traders if tr.symbol == s["symbol"])
        heads = [t("Side"), t("Level"), t("Price"), t("Amount")]
        rows = "".join(
            "<tr>"
            + "".join(
                f'<td data-label="{head}">{value}</td>'
                for head, value in zip(heads, (t(o.side), o.level, _amount(o.price, 2), _amount(o.amount)), strict=True)
            )
            + "</tr>"
            for o in trader.open_orders()
        )
        parts.append(_table(t("Open orders (grid levels)"), heads, rows, t("None yet.")))
        heads = [t("Time"), t("Side"), t("Price"), t("Amount"), t("PnL")]
        fills = "".join(
            "<tr>"
            + "".join(
                f'<td data-label="{head}">{value}</td>'
                for head, value in zip(
                    heads,
                    (iso(ts)[:19].replace("T", " "), t(side), _amount(price, 2), _amount(amount), _amount(pnl, 2)),
                    strict=True,
                )
            )
            + "</tr>"
            for ts, _sym, side, price, amount, _f, _fc, pnl, _c, _l in engine.store.fills(
                symbol=s["symbol"], limit=20, newest_first=True
            )
        )
        parts.append(_table(t("Recent trades") + " (UTC)", heads, fills, t("None yet.")) + "</div>")
    return _page(request, "Status", "".join(parts))


def _table(title: str, heads: list[str], rows: str, empty: str) -> str:
    header = "".join(f'<th scope="col">{head}</th>' for head in heads)
    body = rows or f'<tr><td colspan="{len(heads)}">{empty}</td></tr>'
    return f"<h3>{title}</h3><table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _config_form(request: web.Request, config: dict, secrets: dict, errors: list[str]) -> str:
    engine = request.app[ENGINE_KEY]
    lang = _language(request)
    e = html.escape
    grid, risk, exchange = config.get("grid", {}), config.get("risk", {}), config.get("exchange", {})

    def field(name: str, label: str, value, kind: str = "text") -> str:
        value = "" if value is None else value
        return (
            f'<label for="{name}">{e(label)}</label>'
            f'<input id="{name}" name="{name}" type="{kind}" value="{e(str(value))}" autocomplete="off">'
        )

    t = lambda text: pages_i18n.translate(text, lang)  # noqa: E731
    problems = "".join(f"<li><code>{e(p)}</code></li>" for p in errors)
    pairs = engine.max_trading_pairs
    symbols_label = t("Symbols, comma separated")
    if pairs:
        symbols_label += t(" (your plan: at most {pairs})").format(pairs=pairs)
    return (
        (f'<div class="card error"><ul>{problems}</ul></div>' if problems else "")
        + f'<form method="post" class="card"><h1>{e(t("Configuration"))}</h1>'
        + f'<input type="hidden" name="{CSRF_FIELD}" value="{e(csrf_token(engine))}">'
        + field("exchange", t("Exchange (paper, binance, okx, bybit, …)"), exchange.get("name", "paper"))
        + '<label><input type="checkbox" name="testnet" value="1"'
        + (" checked" if exchange.get("testnet") else "")
        + f"> {e(t('Testnet / sandbox'))}</label>"
        + field("api_key", t("API key"), secrets.get("api_key", ""))
        + field("secret", t("API secret"), secrets.get("secret", ""), "password")
        + field("passphrase", t("Passphrase (OKX, KuCoin, Bitget)"), secrets.get("passphrase", ""), "password")
        + f'<p class="muted">{e(t("Give the key trading rights only, never withdrawals."))}</p>'
        + field("symbols", symbols_label, ",".join(config.get("symbols", [])))
        + field("price_interval", t("Grid price interval"), grid.get("price_interval"))
        + field("order_quote_size", t("Order size (quote currency)"), grid.get("order_quote_size"))
        + field("buy_window", t("Buy window (levels)"), grid.get("buy_window"))
        + field("sell_window", t("Sell window (levels)"), grid.get("sell_window"))
        + field("max_layers", t("Maximum grid layers"), grid.get("max_layers"))
        + field("stop_loss_pct", t("Stop-loss % (empty: off)"), risk.get("stop_loss_pct"))
        + field("daily_loss_limit", t("Daily loss limit (empty: off)"), risk.get("daily_loss_limit"))
        + field("max_position_quote", t("Maximum position value (empty: off)"), risk.get("max_position_quote"))
        + '<label><input type="checkbox" name="post_only" value="1"'
        + (" checked" if grid.get("post_only", True) else "")
        + f"> {e(t('Post-only (maker) orders; some exchanges cannot place them'))}</label>"
        + f'<button type="submit">{e(t("Save and restart"))}</button></form>'
        + _risk_card(engine, t)
    )


def _risk_card(engine: Engine, t) -> str:
    stops = [f"{trader.symbol}: {trader.view.state}" for trader in engine.traders if trader.view.state != "ok"]
    text = "; ".join(stops) if stops else t("no risk stop is active")
    explanation = t(
        "A stop-loss, the daily loss limit and a rapid-decline pause stay in force across restarts and config "
        "saves until cleared here."
    )
    return (
        f'<form method="post" action="/risk/clear" class="card"><h2>{html.escape(t("Risk stops"))}</h2>'
        f"<p>{html.escape(text)}. {html.escape(explanation)}</p>"
        f'<input type="hidden" name="{CSRF_FIELD}" value="{html.escape(csrf_token(engine))}">'
        f'<button type="submit" id="clear-risk">{html.escape(t("Clear risk stops and resume buying"))}</button></form>'
    )


async def page_config(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    view = _config_view(engine)
    return _page(request, "Configuration", _config_form(request, view["config"], view["secrets"], view["errors"]))


def _number(raw: str):
    raw = raw.strip()
    if raw == "":
        return None
    try:
        return int(raw) if raw.lstrip("-").isdigit() else float(raw)
    except ValueError:
        return raw  # the validator names the field


async def page_config_post(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    form = await request.post()
    if _forged_form(request, engine, form):
        return _csrf_refused()
    current = _config_view(engine)["config"]
    config = {
        **current,
        "exchange": {"name": form.get("exchange", "paper").strip(), "testnet": form.get("testnet") == "1"},
        "symbols": [s.strip() for s in form.get("symbols", "").split(",") if s.strip()],
        "grid": {
            **current.get("grid", {}),
            **{
                k: _number(form.get(k, ""))
                for k in ("price_interval", "order_quote_size", "buy_window", "sell_window", "max_layers")
            },
        },
        "risk": {
            **current.get("risk", {}),
            **{k: _number(form.get(k, "")) for k in ("stop_loss_pct", "daily_loss_limit", "max_position_quote")},
        },
    }
    config["grid"] = {k: v for k, v in config["grid"].items() if v is not None}
    config["grid"]["post_only"] = form.get("post_only") == "1"
    secrets = {name: form.get(name, "") for name in FIELDS}
    errors = await apply_config(engine, config, secrets)
    if errors:
        masked = {name: (mask(v) if v else "") for name, v in secrets.items()}
        return _page(request, "Configuration", _config_form(request, config, masked, errors))
    raise web.HTTPSeeOther("/")


def build_app(engine: Engine) -> web.Application:
    app = web.Application(middlewares=[proxy_secret_required], client_max_size=256 * 1024)
    app.on_response_prepare.append(security_headers)
    app[ENGINE_KEY] = engine
    app.router.add_get("/", page_status)
    app.router.add_get("/config", page_config)
    app.router.add_post("/config", page_config_post)
    app.router.add_get("/static/engine.css", stylesheet)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/api/trading", api_trading)
    app.router.add_get("/api/config", api_config_get)
    app.router.add_put("/api/config", api_config_put)
    app.router.add_post("/api/restart", api_restart)
    app.router.add_post("/api/risk/clear", api_risk_clear)
    app.router.add_post("/risk/clear", page_risk_clear)
    app.router.add_get("/api/export/trades", export_trades)
    app.router.add_get("/api/export/config", export_config)
    app.router.add_get("/api/backup/database", backup_database)
    return app
