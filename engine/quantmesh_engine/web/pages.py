"""The engine's own pages (status and config), server-rendered HTML in the viewer's language; no
script, one stylesheet, forms protected by a CSRF token."""

from __future__ import annotations

import html

from aiohttp import web

from .. import pages_i18n
from ..app import Engine
from ..secrets import mask
from .api import status_payload
from .common import ENGINE_KEY, iso
from .configure import apply_config, config_view
from .forms import STRATEGY_FIELDS, config_from_form, secrets_from_form
from .security import CSRF_FIELD, csrf_refused, csrf_token, forged_form

STYLESHEET = """body{font-family:system-ui,-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;margin:0;
color:#111827;background:#f9fafb;line-height:1.5}header{background:#0f172a;color:#e5e7eb;padding:12px 16px;display:flex;
flex-wrap:wrap;gap:6px 16px;align-items:center}header a{color:#93c5fd}main{max-width:1000px;margin:0 auto;padding:16px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:16px;margin-bottom:16px;overflow-wrap:anywhere}
table{width:100%;border-collapse:collapse}td,th{text-align:left;padding:4px 8px;border-bottom:1px solid #e5e7eb;
font-variant-numeric:tabular-nums}.error{color:#b91c1c}.ok{color:#047857}.muted{color:#4b5563}
label{display:block;margin-top:10px}input,select{padding:6px;width:100%;max-width:380px;box-sizing:border-box}
.help{display:block;font-size:.9em;color:#4b5563;max-width:560px}
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


def _strategy_rows(strategy: dict, t) -> str:
    """What the strategy does now and why: the adaptive one's volatility, interval, skew, last change."""
    e = html.escape
    if strategy["kind"] != "adaptive":
        return (
            f"<dt>{t('Strategy')}</dt><dd>{t('Fixed grid')}</dd>"
            f"<dt>{t('Interval')}</dt><dd>{_amount(strategy['interval'], 2)}</dd>"
        )
    changed = strategy["last_change"]
    when = e(iso(changed)[:19].replace("T", " ") + " UTC") if changed else t("none yet")
    return (
        f"<dt>{t('Strategy')}</dt><dd>{t('Adaptive strategy · AI-tuned')}</dd>"
        f"<dt>{t('Volatility')}</dt><dd>{strategy['volatility']:.3%}</dd>"
        f"<dt>{t('Interval')}</dt><dd>{_amount(strategy['interval'], 2)}</dd>"
        f"<dt>{t('Inventory skew')}</dt><dd>{strategy['skew']} {t('levels lower for buys')}</dd>"
        f"<dt>{t('Last change')}</dt><dd>{when}</dd>"
        f"<dt>{t('Why')}</dt><dd><code>{e(strategy['reason'])}</code></dd>"
        f'<dd class="muted">{t(ADAPTIVE_HELP)}</dd>'
    )


ADAPTIVE_HELP = (
    "The interval follows the market's measured volatility and never falls below what a round trip pays in "
    "fees; while it holds inventory the grid buys lower. Changes are limited to one per re-centring period."
)


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
    if status["strategy_notice"]:
        parts.append(f'<p class="badge tone-warn" id="strategy-notice">{t(status["strategy_notice"])}</p>')
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
            f"<dt>{t('Fees')}</dt><dd>{_amount(s['fees'], 2)}</dd><dt>{t('Risk')}</dt><dd>{risk}</dd>"
            f"{_strategy_rows(s['strategy'], t)}</dl>"
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
    notice = engine.strategy_notice
    return (
        (f'<div class="card error"><ul>{problems}</ul></div>' if problems else "")
        + (f'<div class="card"><span class="badge tone-warn">{e(t(notice))}</span></div>' if notice else "")
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
        + _strategy_fields(engine, config.get("strategy", {}), t)
        + f'<button type="submit">{e(t("Save and restart"))}</button></form>'
        + _risk_card(engine, t)
    )


ADAPTIVE_PARAMETERS_HELP = (
    "The parameters below apply to the adaptive strategy only; the grid fields above give its order size, "
    "windows, layers and starting interval."
)


# The adaptive strategy's parameters on the config page: (label, help), in STRATEGY_FIELDS' order.
STRATEGY_LABELS = {
    "spread": (
        "Spread (× volatility over the horizon)",
        "The interval is this many times the price's expected move over the horizon.",
    ),
    "horizon_seconds": ("Horizon (seconds)", "The period whose expected price move sets the interval."),
    "halflife_seconds": (
        "Volatility half-life (seconds)",
        "How fast the volatility estimate forgets old prices (an EWMA of squared log returns).",
    ),
    "max_interval_pct": ("Maximum interval (% of the price)", "The interval never exceeds this share of the price."),
    "skew_per_layer": ("Skew per held layer (levels)", "How many levels lower the buys step for each layer held."),
    "max_skew": (
        "Maximum skew (levels)",
        "The buys never sit more than this many levels lower: your bound on the inventory skew.",
    ),
    "recenter_seconds": (
        "Minimum time between re-centrings (seconds)",
        "At most one change of interval this often, so orders are not churned (falling under the fee floor "
        "re-centres at once).",
    ),
    "min_change_pct": (
        "Minimum change to re-centre (%)",
        "Re-centre only when the wanted interval differs from the current one by at least this much.",
    ),
}
NOT_IN_PLAN = "Not included in your plan: upgrade to a plan with AI strategy to use it."


def _strategy_fields(engine: Engine, strategy: dict, t) -> str:
    """strategy.kind and the adaptive parameters; without the feature in the plan the adaptive option
    is disabled with the reason, and the grid (what trades then) is selected."""
    e = html.escape
    allowed = engine.adaptive_strategy
    kind = strategy.get("kind", "grid") if allowed else "grid"
    options = "".join(
        f'<option value="{value}"'
        + (" selected" if value == kind else "")
        + (" disabled" if value == "adaptive" and not allowed else "")
        + f">{e(t(label))}</option>"
        for value, label in (("grid", "Fixed grid"), ("adaptive", "Adaptive strategy · AI-tuned"))
    )
    parts = [
        f'<h2>{e(t("Strategy"))}</h2><label for="strategy_kind">{e(t("Strategy"))}</label>'
        f'<select id="strategy_kind" name="strategy_kind">{options}</select>'
    ]
    if not allowed:
        parts.append(f'<span class="help error" id="adaptive-not-in-plan">{e(t(NOT_IN_PLAN))}</span>')
    parts.append(f'<p class="help">{e(t(ADAPTIVE_HELP))} {e(t(ADAPTIVE_PARAMETERS_HELP))}</p>')
    for name in STRATEGY_FIELDS:
        label, help_text = STRATEGY_LABELS[name]
        value = strategy.get(name)
        parts.append(
            f'<label for="{name}">{e(t(label))}</label>'
            f'<input id="{name}" name="{name}" value="{e("" if value is None else str(value))}" autocomplete="off"'
            f' aria-describedby="{name}-help"><span class="help" id="{name}-help">{e(t(help_text))}</span>'
        )
    return "".join(parts)


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
    view = config_view(engine)
    return _page(request, "Configuration", _config_form(request, view["config"], view["secrets"], view["errors"]))


async def page_risk_clear(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    if forged_form(request, engine, await request.post()):
        return csrf_refused()
    engine.clear_risk()
    raise web.HTTPSeeOther("/config")


async def page_config_post(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    form = await request.post()
    if forged_form(request, engine, form):
        return csrf_refused()
    config = config_from_form(form, config_view(engine)["config"])
    secrets = secrets_from_form(form)
    errors = await apply_config(engine, config, secrets)
    if errors:
        masked = {name: (mask(v) if v else "") for name, v in secrets.items()}
        return _page(request, "Configuration", _config_form(request, config, masked, errors))
    raise web.HTTPSeeOther("/")
