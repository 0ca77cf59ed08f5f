"""Reading and applying the trading config and the exchange keys: shared by the JSON API and the
config page, so both validate, save and restart the same way."""

from __future__ import annotations

import yaml

from ..app import Engine
from ..config import ConfigError, parse_config, save_config
from ..secrets import FIELDS, ExchangeSecrets


def config_view(engine: Engine) -> dict:
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
        "adaptive_strategy": engine.adaptive_strategy,
    }


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
        engine.refresh_platform()  # the plan as the portal wrote it last
        config = parse_config(
            config_data,
            max_trading_pairs=engine.max_trading_pairs,
            paper_only=engine.paper_only,
            adaptive_strategy=engine.adaptive_strategy,
        )
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
