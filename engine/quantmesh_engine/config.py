"""The engine's trading configuration (config.yaml on the data volume), validated field by field.

Every error names the field it is about (`grid.price_interval: must be > 0`). Unknown fields
are errors too, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

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


class _Validator:
    def __init__(self):
        self.errors: list[str] = []

    def section(self, data: Any, path: str, cls) -> Any:
        defaults = cls()
        if data is None:
            return defaults
        if not isinstance(data, dict):
            self.errors.append(f"{path}: must be a mapping")
            return defaults
        known = {f.name for f in cls.__dataclass_fields__.values()}
        for key in data:
            if key not in known:
                self.errors.append(f"{path}.{key}: unknown field" if path else f"{key}: unknown field")
        values = {}
        for name in known:
            if name in data:
                values[name] = data[name]
        return values

    def number(
        self,
        value: Any,
        path: str,
        *,
        minimum: float | None = None,
        exclusive: bool = False,
        maximum: float | None = None,
        integer: bool = False,
        optional: bool = False,
    ):
        if value is None and optional:
            return None
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind):
            self.errors.append(f"{path}: must be {'an integer' if integer else 'a number'}")
            return None
        if minimum is not None and (value <= minimum if exclusive else value < minimum):
            self.errors.append(f"{path}: must be {'>' if exclusive else '>='} {minimum:g}")
        if maximum is not None and value > maximum:
            self.errors.append(f"{path}: must be <= {maximum:g}")
        return float(value) if not integer else value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.errors.append(f"{path}: must be true or false")
            return False
        return value


def parse_config(data: Any, *, max_trading_pairs: int | None = None, paper_only: bool = False) -> EngineConfig:
    """Validate a config mapping; raises ConfigError listing every problem with its field."""
    v = _Validator()
    top = v.section(data or {}, "", EngineConfig)
    if not isinstance(top, dict):
        raise ConfigError(v.errors)

    exchange = ExchangeConfig()
    raw = v.section(top.get("exchange"), "exchange", ExchangeConfig)
    if isinstance(raw, dict):
        name = raw.get("name", PAPER)
        if not isinstance(name, str) or not name.strip():
            v.errors.append("exchange.name: must be a non-empty string")
            name = PAPER
        elif not _exchange_known(name):
            v.errors.append(f"exchange.name: unknown exchange {name!r} (use 'paper' or an exchange ccxt supports)")
        exchange = ExchangeConfig(name=name.strip(), testnet=v.boolean(raw.get("testnet", False), "exchange.testnet"))

    symbols = top.get("symbols", list(EngineConfig().symbols))
    if isinstance(symbols, str):
        symbols = [symbols]
    if not isinstance(symbols, list) or not symbols:
        v.errors.append("symbols: must be a non-empty list like ['BTC/USDT']")
        symbols = []
    for index, symbol in enumerate(symbols):
        if not isinstance(symbol, str) or symbol.count("/") != 1 or not all(symbol.split("/")):
            v.errors.append(f"symbols[{index}]: must look like 'BASE/QUOTE', got {symbol!r}")
    if len(set(symbols)) != len(symbols):
        v.errors.append("symbols: each symbol may appear once")
    if max_trading_pairs is not None and len(symbols) > max_trading_pairs:
        v.errors.append(
            f"symbols: your plan allows {max_trading_pairs} trading pair(s), this config has {len(symbols)}; "
            "remove some or upgrade your plan"
        )

    grid = GridConfig()
    raw = v.section(top.get("grid"), "grid", GridConfig)
    if isinstance(raw, dict):
        d = GridConfig()
        grid = GridConfig(
            price_interval=v.number(
                raw.get("price_interval", d.price_interval), "grid.price_interval", minimum=0, exclusive=True
            )
            or d.price_interval,
            order_quote_size=v.number(
                raw.get("order_quote_size", d.order_quote_size), "grid.order_quote_size", minimum=0, exclusive=True
            )
            or d.order_quote_size,
            buy_window=v.number(
                raw.get("buy_window", d.buy_window), "grid.buy_window", minimum=1, maximum=200, integer=True
            )
            or d.buy_window,
            sell_window=v.number(
                raw.get("sell_window", d.sell_window), "grid.sell_window", minimum=1, maximum=200, integer=True
            )
            or d.sell_window,
            max_layers=v.number(
                raw.get("max_layers", d.max_layers), "grid.max_layers", minimum=1, maximum=1000, integer=True
            )
            or d.max_layers,
            post_only=v.boolean(raw.get("post_only", d.post_only), "grid.post_only"),
        )

    strategy = _strategy_section(v, top.get("strategy"))

    risk = RiskConfig()
    raw = v.section(top.get("risk"), "risk", RiskConfig)
    if isinstance(raw, dict):
        decline = RapidDeclineConfig()
        rd = v.section(raw.get("rapid_decline"), "risk.rapid_decline", RapidDeclineConfig)
        if isinstance(rd, dict):
            d = RapidDeclineConfig()
            decline = RapidDeclineConfig(
                enabled=v.boolean(rd.get("enabled", d.enabled), "risk.rapid_decline.enabled"),
                drop_pct=v.number(
                    rd.get("drop_pct", d.drop_pct),
                    "risk.rapid_decline.drop_pct",
                    minimum=0,
                    exclusive=True,
                    maximum=100,
                )
                or d.drop_pct,
                window_seconds=v.number(
                    rd.get("window_seconds", d.window_seconds),
                    "risk.rapid_decline.window_seconds",
                    minimum=0,
                    exclusive=True,
                )
                or d.window_seconds,
                recover_pct=v.number(
                    rd.get("recover_pct", d.recover_pct), "risk.rapid_decline.recover_pct", minimum=0, maximum=100
                )
                or 0.0,
            )
        risk = RiskConfig(
            rapid_decline=decline,
            max_position_quote=v.number(
                raw.get("max_position_quote"), "risk.max_position_quote", minimum=0, exclusive=True, optional=True
            ),
            stop_loss_pct=v.number(
                raw.get("stop_loss_pct"), "risk.stop_loss_pct", minimum=0, exclusive=True, maximum=100, optional=True
            ),
            daily_loss_limit=v.number(
                raw.get("daily_loss_limit"), "risk.daily_loss_limit", minimum=0, exclusive=True, optional=True
            ),
        )

    paper = PaperConfig()
    raw = v.section(top.get("paper"), "paper", PaperConfig)
    if isinstance(raw, dict):
        d = PaperConfig()
        csv_path = raw.get("prices_csv")
        if csv_path is not None and not _plain_file_name(csv_path):
            v.errors.append(
                f"paper.prices_csv: must be the name of a file in the data directory, like 'prices.csv' "
                f"(no directory, no '..'), got {str(csv_path)[:80]!r}"
            )
            csv_path = None
        seed = raw.get("seed", d.seed)
        paper = PaperConfig(
            seed=v.number(seed, "paper.seed", integer=True) if seed is not None else d.seed,
            start_price=v.number(raw.get("start_price", d.start_price), "paper.start_price", minimum=0, exclusive=True)
            or d.start_price,
            volatility=v.number(raw.get("volatility", d.volatility), "paper.volatility", minimum=0, maximum=0.5) or 0.0,
            tick_seconds=v.number(raw.get("tick_seconds", d.tick_seconds), "paper.tick_seconds", minimum=0.001)
            or d.tick_seconds,
            prices_csv=csv_path,
            fee_rate=v.number(raw.get("fee_rate", d.fee_rate), "paper.fee_rate", minimum=0, maximum=0.1) or 0.0,
            initial_quote=v.number(raw.get("initial_quote", d.initial_quote), "paper.initial_quote", minimum=0) or 0.0,
            initial_base=v.number(raw.get("initial_base", d.initial_base), "paper.initial_base", minimum=0) or 0.0,
        )

    loop = LoopConfig()
    raw = v.section(top.get("loop"), "loop", LoopConfig)
    if isinstance(raw, dict):
        d = LoopConfig()
        loop = LoopConfig(
            poll_seconds=v.number(raw.get("poll_seconds", d.poll_seconds), "loop.poll_seconds", minimum=0.05)
            or d.poll_seconds,
            reconcile_seconds=v.number(
                raw.get("reconcile_seconds", d.reconcile_seconds), "loop.reconcile_seconds", minimum=1
            )
            or d.reconcile_seconds,
        )

    exchange_id = EXCHANGE_ALIASES.get(exchange.name.lower(), exchange.name.lower())
    if grid.post_only and exchange_id != PAPER and not _dialect(exchange_id).post_only:
        v.errors.append(
            f"grid.post_only: {exchange.name} cannot place post-only orders; set grid.post_only: false to trade "
            "with plain limit orders (they may take liquidity and pay the taker fee)"
        )
    if paper_only and EXCHANGE_ALIASES.get(exchange.name.lower(), exchange.name.lower()) != PAPER:
        v.errors.append("exchange.name: the free trial trades on the paper exchange only; subscribe to trade live")
    cancel = v.boolean(top.get("cancel_orders_on_stop", True), "cancel_orders_on_stop")
    if v.errors:
        raise ConfigError(v.errors)
    return EngineConfig(
        exchange=exchange,
        symbols=tuple(symbols),
        grid=grid,
        strategy=strategy,
        risk=risk,
        paper=paper,
        loop=loop,
        cancel_orders_on_stop=cancel,
    )


def _strategy_section(v: _Validator, data: Any) -> StrategyConfig:
    d = StrategyConfig()
    raw = v.section(data, "strategy", StrategyConfig)
    if not isinstance(raw, dict):
        return d
    kind = raw.get("kind", d.kind)
    if kind not in STRATEGY_KINDS:
        v.errors.append(f"strategy.kind: must be one of {', '.join(STRATEGY_KINDS)}, got {str(kind)[:40]!r}")
        kind = d.kind

    def number(name: str, **bounds):
        value = v.number(raw.get(name, getattr(d, name)), f"strategy.{name}", **bounds)
        return getattr(d, name) if value is None else value

    return StrategyConfig(
        kind=kind,
        spread=number("spread", minimum=0, exclusive=True, maximum=100),
        horizon_seconds=number("horizon_seconds", minimum=1, maximum=30 * 86400),
        halflife_seconds=number("halflife_seconds", minimum=1, maximum=30 * 86400),
        max_interval_pct=number("max_interval_pct", minimum=0, exclusive=True, maximum=50),
        skew_per_layer=number("skew_per_layer", minimum=0, maximum=10),
        max_skew=number("max_skew", minimum=0, maximum=50, integer=True),
        recenter_seconds=number("recenter_seconds", minimum=0, maximum=7 * 86400),
        min_change_pct=number("min_change_pct", minimum=0, maximum=1000),
    )


def _dialect(exchange_id: str):
    from .exchanges.dialects import dialect_for  # only for live exchanges

    return dialect_for(exchange_id)


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
    import ccxt

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
