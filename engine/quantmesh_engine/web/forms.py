"""The config page's form fields turned into the config mapping and keys the validator reads."""

from __future__ import annotations

from ..secrets import FIELDS

GRID_FIELDS = ("price_interval", "order_quote_size", "buy_window", "sell_window", "max_layers")
RISK_FIELDS = ("stop_loss_pct", "daily_loss_limit", "max_position_quote")
# The adaptive strategy's parameters (strategy.kind is the `strategy_kind` select).
STRATEGY_FIELDS = (
    "spread",
    "horizon_seconds",
    "halflife_seconds",
    "max_interval_pct",
    "skew_per_layer",
    "max_skew",
    "recenter_seconds",
    "min_change_pct",
)


def _number(raw: str):
    raw = raw.strip()
    if raw == "":
        return None
    try:
        return int(raw) if raw.lstrip("-").isdigit() else float(raw)
    except ValueError:
        return raw  # the validator names the field


def _filled(form, fields) -> dict:
    return {k: value for k in fields if (value := _number(form.get(k, ""))) is not None}


def config_from_form(form, current: dict) -> dict:
    """The posted fields over the current config: an empty grid or strategy field keeps the stored
    value, an empty risk field turns that limit off."""
    strategy = current.get("strategy", {})
    config = {
        **current,
        "exchange": {"name": form.get("exchange", "paper").strip(), "testnet": form.get("testnet") == "1"},
        "symbols": [s.strip() for s in form.get("symbols", "").split(",") if s.strip()],
        "grid": {**current.get("grid", {}), **_filled(form, GRID_FIELDS)},
        "risk": {**current.get("risk", {}), **{k: _number(form.get(k, "")) for k in RISK_FIELDS}},
        "strategy": {
            **strategy,
            "kind": form.get("strategy_kind", strategy.get("kind", "grid")).strip(),
            **_filled(form, STRATEGY_FIELDS),
        },
    }
    config["grid"]["post_only"] = form.get("post_only") == "1"
    return config


def secrets_from_form(form) -> dict[str, str]:
    return {name: form.get(name, "") for name in FIELDS}
