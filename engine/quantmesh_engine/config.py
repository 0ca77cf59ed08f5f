"""The engine's trading configuration (config.yaml on the data volume), validated field by field.

Every error names the field it is about (`grid.price_interval: must be > 0`). Unknown fields
are errors too, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from .exchanges.dialects import dialect_for

# Names customers use that ccxt spells differently (Gate.io is `gate`, Huobi is `htx`).
# ccxt is pinned to a release that still ships BitMEX.
EXCHANGE_ALIASES = {"gate.io": "gate", "gateio": "gate", "huobi": "htx", "okex": "okx"}
MANUAL_EXCHANGES = (
    "Binance",
    "OKX",
    "Bybit",
    "Bitget",
    "Gate.io",
    "Huobi",
    "KuCoin",
    "Kraken",
    "Bitfinex",
    "MEXC",
    "BingX",
    "Deribit",
    "BitMEX",
)
PAPER = "paper"
# A grid step must earn more than a round trip's fees: at least this fraction of the price on top.
MIN_EDGE = 0.0005


class ConfigError(ValueError):
    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class ExchangeConfig:
    name: str = PAPER
    testnet: bool = False


@dataclass(frozen=True)
class GridConfig:
    # 0.5 % of the paper default's 30,000: a round trip earns 0.3 % after its 0.2 % of fees.
    price_interval: float = 150.0
    order_quote_size: float = 100.0
    buy_window: int = 5
    sell_window: int = 5
    max_layers: int = 10
    post_only: bool = True


STRATEGY_KINDS = ("grid", "adaptive")


@dataclass(frozen=True)
class StrategyConfig:
    """`strategy:` in config.yaml. `grid` trades grid.price_interval as set; `adaptive` moves the
    interval with an online volatility estimate and skews the buys against the inventory (the
    grid section still gives order size, windows and layers). Parameters of `adaptive` only."""

    kind: str = "grid"
    spread: float = 2.0  # interval = spread x volatility over horizon_seconds (never under the fee floor)
    horizon_seconds: float = 3600.0
    halflife_seconds: float = 1800.0  # of the EWMA of squared log returns
    max_interval_pct: float = 5.0
    skew_per_layer: float = 0.5  # grid levels the buys step down per held layer...
    max_skew: int = 3  # ...at most this many levels (the customer's bound)
    recenter_seconds: float = 900.0  # at most one re-centring this often (unless under the fee floor)
    min_change_pct: float = 20.0  # re-centre only when the wanted interval differs this much


@dataclass(frozen=True)
class RapidDeclineConfig:
    enabled: bool = True
    drop_pct: float = 5.0
    window_seconds: float = 300.0
    recover_pct: float = 2.0


@dataclass(frozen=True)
class RiskConfig:
    rapid_decline: RapidDeclineConfig = field(default_factory=RapidDeclineConfig)
    max_position_quote: float | None = None
    stop_loss_pct: float | None = None
    daily_loss_limit: float | None = None


@dataclass(frozen=True)
class PaperConfig:
    seed: int = 42
    start_price: float = 30000.0
    volatility: float = 0.0005
    tick_seconds: float = 1.0
    prices_csv: str | None = None
    fee_rate: float = 0.001
    initial_quote: float = 10000.0
    initial_base: float = 0.0


@dataclass(frozen=True)
class LoopConfig:
    poll_seconds: float = 1.0
    reconcile_seconds: float = 30.0


@dataclass(frozen=True)
class EngineConfig:
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    symbols: tuple[str, ...] = ("BTC/USDT",)
    grid: GridConfig = field(default_factory=GridConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    paper: PaperConfig = field(default_factory=PaperConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    cancel_orders_on_stop: bool = True

    @property
    def exchange_id(self) -> str:
        return EXCHANGE_ALIASES.get(self.exchange.name.lower(), self.exchange.name.lower())

    @property
    def is_paper(self) -> bool:
        return self.exchange_id == PAPER

    def to_dict(self) -> dict:
        data = asdict(self)
        data["symbols"] = list(self.symbols)
        return data


@dataclass(frozen=True)
class Bound:
    """What a numeric field accepts; its error message is derived from it (`must be > 0`). The
    field's type comes from `integer`, its default from the section's dataclass."""

    integer: bool = False
    minimum: float | None = None
    exclusive: bool = False  # the minimum itself is refused
    maximum: float | None = None
    nullable: bool = False  # an explicit null takes the field's default


# Every numeric field of config.yaml, declared once.
BOUNDS: dict[str, Bound] = {
    "grid.price_interval": Bound(minimum=0, exclusive=True),
    "grid.order_quote_size": Bound(minimum=0, exclusive=True),
    "grid.buy_window": Bound(integer=True, minimum=1, maximum=200),
    "grid.sell_window": Bound(integer=True, minimum=1, maximum=200),
    "grid.max_layers": Bound(integer=True, minimum=1, maximum=1000),
    "strategy.spread": Bound(minimum=0, exclusive=True, maximum=100),
    "strategy.horizon_seconds": Bound(minimum=1, maximum=30 * 86400),
    "strategy.halflife_seconds": Bound(minimum=1, maximum=30 * 86400),
    "strategy.max_interval_pct": Bound(minimum=0, exclusive=True, maximum=50),
    "strategy.skew_per_layer": Bound(minimum=0, maximum=10),
    "strategy.max_skew": Bound(integer=True, minimum=0, maximum=50),
    "strategy.recenter_seconds": Bound(minimum=0, maximum=7 * 86400),
    "strategy.min_change_pct": Bound(minimum=0, maximum=1000),
    "risk.rapid_decline.drop_pct": Bound(minimum=0, exclusive=True, maximum=100),
    "risk.rapid_decline.window_seconds": Bound(minimum=0, exclusive=True),
    "risk.rapid_decline.recover_pct": Bound(minimum=0, maximum=100),
    "risk.max_position_quote": Bound(minimum=0, exclusive=True, nullable=True),
    "risk.stop_loss_pct": Bound(minimum=0, exclusive=True, maximum=100, nullable=True),
    "risk.daily_loss_limit": Bound(minimum=0, exclusive=True, nullable=True),
    "paper.seed": Bound(integer=True, nullable=True),
    "paper.start_price": Bound(minimum=0, exclusive=True),
    "paper.volatility": Bound(minimum=0, maximum=0.5),
    "paper.tick_seconds": Bound(minimum=0.001),
    "paper.fee_rate": Bound(minimum=0, maximum=0.1),
    "paper.initial_quote": Bound(minimum=0),
    "paper.initial_base": Bound(minimum=0),
    "loop.poll_seconds": Bound(minimum=0.05),
    "loop.reconcile_seconds": Bound(minimum=1),
}


def _number(value: Any, path: str, bound: Bound, default: Any, errors: list[str]):
    if value is None and bound.nullable:
        return default
    kind = int if bound.integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        errors.append(f"{path}: must be {'an integer' if bound.integer else 'a number'}")
        return default
    minimum, maximum = bound.minimum, bound.maximum
    if minimum is not None and (value <= minimum if bound.exclusive else value < minimum):
        errors.append(f"{path}: must be {'>' if bound.exclusive else '>='} {minimum:g}")
    if maximum is not None and value > maximum:
        errors.append(f"{path}: must be <= {maximum:g}")
    return value if bound.integer else float(value)


def _boolean(value: Any, path: str, errors: list[str]) -> bool:
    if not isinstance(value, bool):
        errors.append(f"{path}: must be true or false")
        return False  # an invalid flag is off for the cross-field checks (no post-only error on top)
    return value


def _exchange_name(value: Any, path: str, errors: list[str]) -> str:
    if not isinstance(value, str) or not value.strip():
        errors.append(f"{path}: must be a non-empty string")
        return PAPER
    if not _exchange_known(value):
        errors.append(f"{path}: unknown exchange {value!r} (use 'paper' or an exchange ccxt supports)")
    return value.strip()


def _symbols(value: Any, path: str, errors: list[str]) -> tuple:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        errors.append(f"{path}: must be a non-empty list like ['BTC/USDT']")
        return ()
    for index, symbol in enumerate(value):
        if not isinstance(symbol, str) or symbol.count("/") != 1 or not all(symbol.split("/")):
            errors.append(f"{path}[{index}]: must look like 'BASE/QUOTE', got {symbol!r}")
    if len(set(value)) != len(value):
        errors.append(f"{path}: each symbol may appear once")
    return tuple(value)


def _prices_csv(value: Any, path: str, errors: list[str]) -> str | None:
    if value is not None and not _plain_file_name(value):
        errors.append(
            f"{path}: must be the name of a file in the data directory, like 'prices.csv' "
            f"(no directory, no '..'), got {str(value)[:80]!r}"
        )
        return None
    return value


def _strategy_kind(value: Any, path: str, errors: list[str]) -> str:
    if value not in STRATEGY_KINDS:
        errors.append(f"{path}: must be one of {', '.join(STRATEGY_KINDS)}, got {str(value)[:40]!r}")
        return STRATEGY_KINDS[0]
    return value


# Fields that are neither a number, a flag nor a section.
FIELD_CHECKS = {
    "exchange.name": _exchange_name,
    "symbols": _symbols,
    "paper.prices_csv": _prices_csv,
    "strategy.kind": _strategy_kind,
}


def _section(cls, data: Any, path: str, errors: list[str]):
    """The dataclass `cls` read from `data`, each field checked by what it is: a nested section,
    a flag, a bounded number or one of FIELD_CHECKS. Absent fields take the dataclass default."""
    defaults = cls()
    if data is None:
        return defaults
    if not isinstance(data, dict):
        errors.append(f"{path}: must be a mapping")
        return defaults
    names = [f.name for f in fields(cls)]
    errors.extend(
        f"{path}.{key}: unknown field" if path else f"{key}: unknown field" for key in data if key not in names
    )
    values = {}
    for name in names:
        where = f"{path}.{name}" if path else name
        default = getattr(defaults, name)
        if is_dataclass(default):
            values[name] = _section(type(default), data.get(name), where, errors)
        elif where in FIELD_CHECKS:
            values[name] = FIELD_CHECKS[where](data.get(name, default), where, errors)
        elif isinstance(default, bool):
            values[name] = _boolean(data.get(name, default), where, errors)
        else:
            values[name] = _number(data.get(name, default), where, BOUNDS[where], default, errors)
    return cls(**values)


@dataclass(frozen=True)
class PlanLimits:
    """What the customer's plan allows; the cross-field checks hold a config against it."""

    max_trading_pairs: int | None = None
    paper_only: bool = False
    adaptive_strategy: bool = True


def _pairs_within_plan(config: EngineConfig, plan: PlanLimits) -> str | None:
    pairs, allowed = len(config.symbols), plan.max_trading_pairs
    if allowed is not None and pairs > allowed:
        return (
            f"symbols: your plan allows {allowed} trading pair(s), this config has {pairs}; "
            "remove some or upgrade your plan"
        )
    return None


def _post_only_supported(config: EngineConfig, plan: PlanLimits) -> str | None:
    if config.grid.post_only and not config.is_paper and not dialect_for(config.exchange_id).post_only:
        return (
            f"grid.post_only: {config.exchange.name} cannot place post-only orders; set grid.post_only: false to "
            "trade with plain limit orders (they may take liquidity and pay the taker fee)"
        )
    return None


def _paper_on_trial(config: EngineConfig, plan: PlanLimits) -> str | None:
    if plan.paper_only and not config.is_paper:
        return "exchange.name: the free trial trades on the paper exchange only; subscribe to trade live"
    return None


# The engine knows the plan's features, not its name; the portal's refusal names the plan.
ADAPTIVE_NOT_IN_PLAN = "adaptive strategy not included in the plan"


def _adaptive_in_plan(config: EngineConfig, plan: PlanLimits) -> str | None:
    if config.strategy.kind == "adaptive" and not plan.adaptive_strategy:
        return (
            f"strategy.kind: {ADAPTIVE_NOT_IN_PLAN} (Adaptive strategy · AI-tuned comes with the plans that "
            "include AI strategy); use kind: grid, or upgrade your plan"
        )
    return None


CROSS_FIELD_CHECKS = (_pairs_within_plan, _post_only_supported, _paper_on_trial, _adaptive_in_plan)


def parse_config(
    data: Any, *, max_trading_pairs: int | None = None, paper_only: bool = False, adaptive_strategy: bool = True
) -> EngineConfig:
    """Validate a config mapping; raises ConfigError listing every problem with its field: first
    each field on its own, then the checks that span fields or the plan. The plan defaults to no
    limits (an engine without platform.yaml, the advisor's backtests)."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError([": must be a mapping"])
    errors: list[str] = []
    config = _section(EngineConfig, data, "", errors)
    plan = PlanLimits(max_trading_pairs=max_trading_pairs, paper_only=paper_only, adaptive_strategy=adaptive_strategy)
    errors.extend(problem for check in CROSS_FIELD_CHECKS if (problem := check(config, plan)))
    if errors:
        raise ConfigError(errors)
    return config


def _plain_file_name(name: Any) -> bool:
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\\0")
        and Path(name).name == name
        and not name.startswith(".")
    )


def money_problems(
    grid: GridConfig, *, symbol: str, price: float | None, fee_rate: float, min_cost: float, min_amount: float = 0.0
) -> list[str]:
    """Why this grid cannot trade `symbol` at `price` without losing money or being refused: a step
    that does not cover a round trip's fees plus MIN_EDGE, or an order under the exchange minimum.
    Without a price only the minimum order value is checked."""
    problems = []
    needed = (price or 0.0) * (2 * fee_rate + MIN_EDGE)
    if price and grid.price_interval < needed:
        problems.append(
            f"grid.price_interval: {grid.price_interval:g} is {grid.price_interval / price:.3%} of the {symbol} "
            f"price {price:g}; a round trip pays {2 * fee_rate:.3%} in fees ({fee_rate:.3%} per order) and needs "
            f"a {MIN_EDGE:.3%} margin: use at least {needed:.6g}"
        )
    minimum = max(min_cost, min_amount * (price or 0.0))
    if grid.order_quote_size < minimum:
        quote = symbol.split("/")[-1]
        problems.append(
            f"grid.order_quote_size: {grid.order_quote_size:g} {quote} is below the exchange's minimum order "
            f"for {symbol} of {minimum:.6g} {quote}"
        )
    return problems


def _exchange_known(name: str) -> bool:
    key = EXCHANGE_ALIASES.get(name.lower(), name.lower())
    if key == PAPER:
        return True
    import ccxt  # large (tens of MB resident): loaded only to check a live exchange's name

    return key in ccxt.exchanges


def load_config(path: Path, *, max_trading_pairs: int | None = None, paper_only: bool = False) -> EngineConfig:
    """The config in `path` (defaults when the file does not exist)."""
    if not path.exists():
        return parse_config({}, max_trading_pairs=max_trading_pairs, paper_only=paper_only)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError([f"config.yaml: not valid YAML ({error})".replace("\n", " ")]) from None
    return parse_config(data, max_trading_pairs=max_trading_pairs, paper_only=paper_only)


def save_config(path: Path, config: EngineConfig) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    tmp.replace(path)
