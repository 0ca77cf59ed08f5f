"""The engine process: configuration, the trading loop with its error state, and clean shutdown.

A bad config or refused keys never crash the process: it keeps serving its page and API in an
error state that says what is wrong, retrying exchange trouble with exponential back-off. A
temporary exchange error while trading keeps the traders (their orders and risk state) and
reconciles once the exchange answers again; only a failed connection builds them anew.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sqlite3
import time
from collections import Counter
from pathlib import Path

from . import __version__
from .config import ADAPTIVE_NOT_IN_PLAN, ConfigError, EngineConfig, load_config, money_problems
from .exchanges.base import AuthError, Exchange, ExchangeError
from .exchanges.dialects import dialect_for
from .exchanges.paper import PAPER_MIN_COST, TRADE_PREFIX, PaperExchange, PriceFileError, read_prices
from .logs import event
from .platform import Platform, load_platform, load_run_keys
from .risk import DailyLoss
from .secrets import ExchangeSecrets, SecretStore
from .store import Store
from .trader import Trader

logger = logging.getLogger("quantmesh.engine")
BACKOFF_START, BACKOFF_MAX = 1.0, 60.0


class Engine:
    def __init__(
        self,
        data_dir: Path,
        *,
        config_path: Path | None = None,
        insecure_no_proxy_secret: bool = False,
        keys_file: Path | None = None,
    ):
        self.data_dir = data_dir
        self.config_path = config_path or data_dir / "config.yaml"
        self.run_keys = load_run_keys(keys_file)
        self.secret_store = SecretStore(data_dir, self.run_keys.get("secrets_key"))
        self.platform: Platform | None = load_platform(data_dir / "platform.yaml")
        self.insecure = insecure_no_proxy_secret
        self.store = Store(data_dir / "engine.db")
        self.counters: Counter = Counter()
        self.state = "starting"  # starting | running | error | stopped
        self.error = ""
        # Why trading stopped, as a code the portal shows in words (ERROR_CAUSES); empty when not in error.
        self.error_cause = ""
        self.config: EngineConfig | None = None  # what trades: the saved config within the plan
        # Why the trading config differs from the saved one (a downgrade took the adaptive strategy).
        self.strategy_notice = ""
        self.exchange: Exchange | None = None
        self.traders: list[Trader] = []
        self.last_tick_at: float | None = None
        self.started_at = time.time()
        self.version = __version__
        self._task: asyncio.Task | None = None

    @property
    def max_trading_pairs(self) -> int | None:
        return self.platform.max_trading_pairs if self.platform else None

    @property
    def paper_only(self) -> bool:
        return bool(self.platform and self.platform.paper_only)

    @property
    def adaptive_strategy(self) -> bool:
        """The plan includes the adaptive strategy (no platform.yaml: local development, no plan)."""
        return self.platform.adaptive_strategy if self.platform else True

    @property
    def proxy_secret(self) -> str | None:
        if "proxy_secret" in self.run_keys:
            return self.run_keys["proxy_secret"]
        return self.platform.proxy_secret if self.platform else None

    def secrets(self) -> ExchangeSecrets:
        return self.secret_store.load()

    def refresh_platform(self) -> None:
        # The portal rewrites platform.yaml when the plan changes: read it with every config load and write.
        self.platform = load_platform(self.data_dir / "platform.yaml")

    def load_config(self) -> EngineConfig:
        """config.yaml as saved, held against the plan. A saved adaptive strategy the plan no longer
        includes (a downgrade) is no error here: trading falls back to the grid (trading_config), and
        only writes that select it are refused."""
        self.refresh_platform()
        return load_config(self.config_path, max_trading_pairs=self.max_trading_pairs, paper_only=self.paper_only)

    def trading_config(self, saved: EngineConfig) -> EngineConfig:
        """What trades: `saved`, with the fixed grid (its own grid settings) instead of an adaptive
        strategy the plan does not include, and the notice saying so."""
        if saved.strategy.kind == "adaptive" and not self.adaptive_strategy:
            if not self.strategy_notice:
                event(logger, logging.WARNING, ADAPTIVE_NOT_IN_PLAN + ": trading the fixed grid")
            self.strategy_notice = ADAPTIVE_NOT_IN_PLAN + ": trading the fixed grid"
            return dataclasses.replace(saved, strategy=dataclasses.replace(saved.strategy, kind="grid"))
        self.strategy_notice = ""
        return saved

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def restart(self) -> None:
        """Apply a saved config: stop trading (orders stay unless configured) and start again."""
        event(logger, logging.INFO, "restarting the trading loop")
        await self._stop_trading(cancel_orders=False)
        self.start()

    async def shutdown(self) -> None:
        cancel = self.config.cancel_orders_on_stop if self.config else False
        await self._stop_trading(cancel_orders=cancel)
        self.state = "stopped"
        self.store.close()
        event(logger, logging.INFO, "engine stopped")

    async def _stop_trading(self, *, cancel_orders: bool) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception as error:  # a crashed loop must not fail the config save that restarts it
                event(logger, logging.ERROR, "trading loop had crashed", error=f"{type(error).__name__}: {error}")
            self._task = None
        for trader in self.traders:
            try:
                await asyncio.wait_for(trader.shutdown(cancel_orders=cancel_orders), timeout=5)
            except (ExchangeError, TimeoutError) as error:
                event(logger, logging.WARNING, "could not cancel open orders", symbol=trader.symbol, reason=str(error))
        try:
            self._save_paper_state()
        except sqlite3.OperationalError as error:  # a full disk must not stop a clean shutdown
            event(logger, logging.WARNING, "could not save the paper account", reason=str(error))
        if self.exchange is not None:
            await self.exchange.close()
        self.exchange, self.traders = None, []

    def _fail(self, message: str, *, cause: str) -> None:
        if self.state != "error" or self.error != message:
            event(logger, logging.ERROR, "trading stopped: " + message, cause=cause)
        self.state, self.error, self.error_cause = "error", message, cause

    def prices_file(self, name: str) -> Path:
        """The replay file `name` in the data directory; a ConfigError when it is not a regular file
        there (a symlink pointing out of the data directory counts as outside)."""
        root = self.data_dir.resolve()
        path = (root / name).resolve()
        if path.parent != root:
            raise ConfigError([f"paper.prices_csv: {name!r} leads outside the data directory"])
        if not path.is_file():
            raise ConfigError([f"paper.prices_csv: there is no file {name!r} in the data directory; upload it first"])
        return path

    def reference_prices(self, config: EngineConfig) -> dict[str, float]:
        """Prices to check a paper config's money rules against (its replay file's first price or its
        start price); live prices come from the exchange. ConfigError for an unusable replay file."""
        if not config.is_paper:
            return {t.symbol: t.price for t in self.traders if t.price and t.exchange.name == config.exchange_id}
        start = config.paper.start_price
        prices = {symbol: start / (10**index) for index, symbol in enumerate(config.symbols)}
        if config.paper.prices_csv:
            try:
                prices[config.symbols[0]] = read_prices(self.prices_file(config.paper.prices_csv))[0]
            except (PriceFileError, OSError) as error:
                raise ConfigError([f"paper.prices_csv: {error}"]) from None
        return prices

    def money_problems(self, config: EngineConfig) -> list[str]:
        """A config's money rules checked before it is saved: paper against its own prices and fee;
        live against the exchange's market, fee and last price when this engine trades there now
        (else the minimum from the exchange's dialect; the trader checks the rest at its first price)."""
        prices = self.reference_prices(config)
        connected = self.exchange is not None and self.exchange.name == config.exchange_id
        problems = []
        for symbol in config.symbols:
            fee, min_cost, min_amount = 0.0, 0.0, 0.0
            if config.is_paper:
                fee, min_cost = config.paper.fee_rate, PAPER_MIN_COST
            elif connected and symbol in self.exchange.markets:
                market = self.exchange.market(symbol)
                fee = self.exchange.fee_rate(symbol, maker=config.grid.post_only)
                min_cost, min_amount = market.min_cost, market.min_amount
            else:
                min_cost = dialect_for(config.exchange_id).min_notional
            problems += money_problems(
                config.grid,
                symbol=symbol,
                price=prices.get(symbol),
                fee_rate=fee,
                min_cost=min_cost,
                min_amount=min_amount,
            )
        return problems

    def _build_exchange(self, config: EngineConfig) -> Exchange:
        if config.is_paper:
            csv_name = config.paper.prices_csv
            return PaperExchange.from_config(
                config.paper, start_time=time.time(), csv_path=self.prices_file(csv_name) if csv_name else None
            )
        # ccxt is large (tens of MB resident): only live trading loads it.
        from .exchanges.live import LiveExchange

        secrets = self.secrets()
        if not secrets.present:
            raise AuthError(f"no API key for {config.exchange.name}: enter the key and secret on the config page")
        return LiveExchange(
            config.exchange_id,
            secrets,
            testnet=config.exchange.testnet,
            api_url=os.environ.get("QM_ENGINE_EXCHANGE_API_URL") or None,
        )

    def _save_paper_state(self) -> None:
        # Balances are not saved: they are derived from the fills, which are booked as they happen.
        if isinstance(self.exchange, PaperExchange):
            self.store.set_state("paper", self.exchange.state())

    async def _run(self) -> None:
        backoff = BACKOFF_START
        while True:
            try:
                self.config = self.trading_config(self.load_config())
            except ConfigError as error:
                self._fail(f"invalid config: {error}", cause="config_error")
                return  # nothing to retry until the customer saves a valid config
            try:
                await self._connect()
                self.state, self.error, self.error_cause = "running", "", ""
                event(
                    logger,
                    logging.INFO,
                    "trading",
                    exchange=self.config.exchange_id,
                    symbols=",".join(self.config.symbols),
                )
                backoff = BACKOFF_START
                await self._loop()
            except AuthError as error:
                self._fail(str(error), cause="keys_refused")
                await self._drop_exchange()
                return  # refused keys do not get better by retrying; a config save restarts us
            except ConfigError as error:  # found with the exchange: the replay file, a fee, a minimum
                self._fail(f"invalid config: {error}", cause="config_error")
                await self._drop_exchange()
                return
            except ExchangeError as error:
                self._fail(f"exchange error, retrying in {backoff:.0f} s: {error}", cause="exchange_unreachable")
                await self._drop_exchange()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            except sqlite3.OperationalError as error:
                # E.g. the disk is full: the failed write was rolled back and the database is intact.
                # Pause trading and retry; it resumes by itself once the write goes through.
                self._fail(
                    f"cannot write the database ({error}), trading paused; retrying in {backoff:.0f} s",
                    cause="storage_error",
                )
                await self._drop_exchange()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            except (OSError, PriceFileError) as error:
                self._fail(f"cannot read the price data: {error}", cause="config_error")
                await self._drop_exchange()
                return

    async def _drop_exchange(self) -> None:
        if self.exchange is not None:
            await self.exchange.close()
        self.exchange, self.traders = None, []

    async def _connect(self) -> None:
        config = self.config
        self.exchange = self._build_exchange(config)
        await self.exchange.connect(list(config.symbols))
        if isinstance(self.exchange, PaperExchange):
            saved = self.store.get_state("paper") or {}
            self.exchange.restore(
                prices=saved.get("prices", {}),
                replay=saved.get("replay", {}),
                clock=saved.get("clock", 0.0),
                changes=self.store.balance_changes(TRADE_PREFIX),
            )
        daily = DailyLoss(config.risk.daily_loss_limit, self.store, self.counters)
        self.traders = [
            Trader(
                symbol=s, config=config, exchange=self.exchange, store=self.store, counters=self.counters, daily=daily
            )
            for s in config.symbols
        ]
        for trader in self.traders:
            await trader.start()

    async def _loop(self) -> None:
        config = self.config
        interval = config.paper.tick_seconds if config.is_paper else config.loop.poll_seconds
        next_reconcile = time.monotonic() + config.loop.reconcile_seconds
        backoff = BACKOFF_START
        while True:
            try:
                for trader in self.traders:
                    await trader.step()
                if self.state != "running":  # the exchange answers again: repair what the error cut short
                    for trader in self.traders:
                        await trader.reconcile()
                    self.state, self.error, backoff = "running", "", BACKOFF_START
                    event(logger, logging.INFO, "trading again")
            except AuthError:
                raise
            except ExchangeError as error:
                self._fail(f"exchange error, retrying in {backoff:.0f} s: {error}", cause="exchange_unreachable")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            self.last_tick_at = time.time()
            now = time.monotonic()
            if now >= next_reconcile:
                next_reconcile = now + config.loop.reconcile_seconds
                for trader in self.traders:
                    await trader.reconcile()
            self._save_paper_state()
            await asyncio.sleep(interval)

    def clear_risk(self) -> list[str]:
        """The customer clears every risk stop; returns what was active ("stop_loss BTC/USDT", ...)."""
        cleared = []
        for trader in self.traders:
            cleared += [f"{name} {trader.symbol}" for name in trader.clear_risk()]
        trading = {trader.symbol for trader in self.traders}
        for key, value in self.store.states_like("risk:"):  # symbols not trading now (an error state)
            symbol = key.removeprefix("risk:")
            if (
                key != DailyLoss.KEY
                and symbol not in trading
                and (value.get("stop_loss") or value.get("rapid_decline"))
            ):
                self.store.set_state(key, {})
                cleared += [f"{name} {symbol}" for name in ("stop_loss", "rapid_decline") if value.get(name)]
        daily = self.traders[0].risk.daily if self.traders else DailyLoss(None, self.store, self.counters)
        if daily.paused_day is not None:
            cleared.append("daily_loss_limit")
        daily.clear()
        event(logger, logging.INFO, "risk stops cleared by the customer", cleared=",".join(cleared) or "none")
        return cleared

    # --- what the web layer shows -------------------------------------------------------------

    def trading_state(self) -> tuple[str, str, str]:
        """(state, cause, reason): what the customer must see beside the container's status.

        state is trading, paused (risk control holds buys; cause names the rules), error (cause:
        config_error, keys_refused, exchange_unreachable, storage_error), starting or stopped."""
        if self.state == "error":
            return "error", self.error_cause, self.error
        if self.state != "running":
            return self.state, "", ""
        rules = sorted({rule for t in self.traders if t.view.state != "ok" for rule in t.view.state.split(",")})
        if rules:
            paused = ", ".join(t.symbol for t in self.traders if t.view.state != "ok")
            return "paused", ",".join(rules), f"risk control ({', '.join(rules)}) paused buying of {paused}"
        return "trading", "", ""

    def healthy(self) -> bool:
        if self.state != "running" or self.last_tick_at is None or self.config is None:
            return False
        interval = self.config.paper.tick_seconds if self.config.is_paper else self.config.loop.poll_seconds
        return time.time() - self.last_tick_at < max(10.0, 5 * interval)
