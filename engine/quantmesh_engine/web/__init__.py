"""The engine's HTTP side on port 8080: its web page, config page, JSON API, exports, metrics.

Only the portal's proxy may call it: every request but /healthz must carry the per-instance
secret from platform.yaml in X-QuantMesh-Proxy-Secret. One module per concern: `api` (JSON for
the portal), `pages` (HTML for people), `forms` (the config form's fields), `exports` (CSV/YAML
downloads), `candles` (market data for the strategy advisor), `metrics` (Prometheus text),
`security` (proxy secret, CSP, CSRF).
"""

from __future__ import annotations

from aiohttp import web

from ..app import Engine
from . import api, candles, exports, pages
from .common import ENGINE_KEY
from .metrics import label_value, metrics
from .security import PROXY_SECRET_HEADER, proxy_secret_required, security_headers

__all__ = ["ENGINE_KEY", "PROXY_SECRET_HEADER", "build_app", "label_value"]


def build_app(engine: Engine) -> web.Application:
    app = web.Application(middlewares=[proxy_secret_required], client_max_size=256 * 1024)
    app.on_response_prepare.append(security_headers)
    app[ENGINE_KEY] = engine
    app.router.add_get("/", pages.page_status)
    app.router.add_get("/config", pages.page_config)
    app.router.add_post("/config", pages.page_config_post)
    app.router.add_get("/static/engine.css", pages.stylesheet)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/status", api.api_status)
    app.router.add_get("/api/trading", api.api_trading)
    app.router.add_get("/api/candles", candles.api_candles)
    app.router.add_get("/api/config", api.api_config_get)
    app.router.add_put("/api/config", api.api_config_put)
    app.router.add_post("/api/restart", api.api_restart)
    app.router.add_post("/api/risk/clear", api.api_risk_clear)
    app.router.add_post("/risk/clear", pages.page_risk_clear)
    app.router.add_get("/api/export/trades", exports.export_trades)
    app.router.add_get("/api/export/config", exports.export_config)
    app.router.add_get("/api/backup/database", api.backup_database)
    return app
