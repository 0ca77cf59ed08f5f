"""The engine process: configuration, the trading loop with its error state, and clean shutdown.

A bad config or refused keys never crash the process: it keeps serving its page and API in an
error state that says what is wrong, retrying exchange trouble with exponential back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import Counter
from pathlib import Path

from . import __version__
from .config import ConfigError, EngineConfig, load_config
from .exchanges.base import AuthError, Exchange, ExchangeError
from .exchanges.paper import PaperExchange
from .logs import event
from .platform import Platform, load_platform
from .secrets import ExchangeSecrets, load_secrets
from .store import Store
from .trader import Trader

logger = logging.getLogger("quantmesh.engine")
BACKOFF_START, BACKOFF_MAX = 1.0, 60.0


class Engine:
    def __init__(self, data_dir: Path, *, config_path: Path | None = None, insecure_no_proxy_secret: bool = False):
        self.data_dir = data_dir
        self.config_path = config_path or data_dir / "config.yaml"
        self.secrets_path = data_dir / "secrets.yaml"
        self.platform: Platform | None = load_platform(data_dir / "platform.yaml")
        self.insecure = insecure_no_proxy_secret
        self.store = Store(data_dir / "engine.db")
        self.counters: Counter = Counter()
        self.state = "starting"  # starting | running | error | stopped
        self.error = ""
        # Why trading stopped, as a code the portal shows in words (ERROR_CAUSES); empty when not in error.
        self.error_cause = ""
        self.config: EngineConfig | None = None
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
    def proxy_secret(self) -> str | None:
        return self.platform.proxy_secret if self.platform else None

    def secrets(self) -> ExchangeSecrets:
        return load_secrets(self.secrets_path)

    def load_config(self) -> EngineConfig:
        # The portal rewrites platform.yaml when the plan changes: read it with every config load.
        self.platform = load_platform(self.data_dir / "platform.yaml")
        return load_config(self.config_path, max_trading_pairs=self.max_trading_pairs, paper_only=self.paper_only)

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
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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

    def _build_exchange(self, config: EngineConfig) -> Exchange:
        if config.is_paper:
            paper = config.paper
            exchange = PaperExchange(
                seed=paper.seed,
                start_price=paper.start_price,
                volatility=paper.volatility,
                tick_seconds=paper.tick_seconds,
                fee_rate=paper.fee_rate,
                initial_quote=paper.initial_quote,
                initial_base=paper.initial_base,
                start_time=time.time(),
                csv_path=self.data_dir / paper.prices_csv if paper.prices_csv else None,
            )
            return exchange
        # ccxt is large (tens of MB resident): only live trading loads it.
        from .exchanges.live import LiveExchange

        secrets = self.secrets()
        if not secrets.present:
            raise AuthError(f"no API key for {config.exchange.name}: enter the key and secret on the config page")
        return LiveExchange(config.exchange_id, secrets, testnet=config.exchange.testnet)

    def _save_paper_state(self) -> None:
        if isinstance(self.exchange, PaperExchange):
            self.store.set_state(
                "paper",
                {
                    "funds": self.exchange.total_funds(),
                    "clock": self.exchange.clock,
                    "prices": {t.symbol: t.price for t in self.traders if t.price},
                },
            )

    async def _run(self) -> None:
        backoff = BACKOFF_START
        while True:
            try:
                self.config = self.load_config()
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
            except OSError as error:
                self._fail(f"cannot read the price data: {error}", cause="config_error")
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
            saved = self.store.get_state("paper")
            if saved:
                self.exchange.restore(saved["prices"], saved["clock"], saved["funds"])
        self.traders = [
            Trader(symbol=s, config=config, exchange=self.exchange, store=self.store, counters=self.counters)
            for s in config.symbols
        ]
        for trader in self.traders:
            await trader.start()

    async def _loop(self) -> None:
        config = self.config
        interval = config.paper.tick_seconds if config.is_paper else config.loop.poll_seconds
        next_reconcile = time.monotonic() + config.loop.reconcile_seconds
        next_snapshot = 0.0
        while True:
            for trader in self.traders:
                await trader.step()
            self.last_tick_at = time.time()
            now = time.monotonic()
            if now >= next_reconcile:
                next_reconcile = now + config.loop.reconcile_seconds
                for trader in self.traders:
                    await trader.reconcile()
            if now >= next_snapshot:
                next_snapshot = now + 5
                self._save_paper_state()
            await asyncio.sleep(interval)

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
