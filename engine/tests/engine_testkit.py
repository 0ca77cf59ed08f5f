"""Engine test helpers: scripted markets on the paper exchange, a trader to drive, platform files."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml
from quantmesh_engine.config import parse_config
from quantmesh_engine.exchanges.paper import PaperExchange
from quantmesh_engine.store import Store
from quantmesh_engine.trader import Trader

FIXTURES = Path(__file__).parent / "fixtures"


def scripted_trader(
    tmp_path: Path,
    prices: list[float],
    config: dict | None = None,
    *,
    fee_rate: float = 0.0,
    initial_quote: float = 100_000.0,
    store: Store | None = None,
):
    """A trader on a paper exchange that replays `prices`, one per step."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    csv_path = tmp_path / "prices.csv"
    csv_path.write_text("price\n" + "\n".join(str(p) for p in prices) + "\n")
    cfg = parse_config(
        {
            "grid": {"price_interval": 10, "order_quote_size": 100, "buy_window": 3, "sell_window": 3, "max_layers": 5},
            "risk": {"rapid_decline": {"enabled": False}},
            **(config or {}),
        }
    )
    exchange = PaperExchange(
        seed=1,
        start_price=prices[0],
        volatility=0,
        tick_seconds=1,
        fee_rate=fee_rate,
        initial_quote=initial_quote,
        initial_base=0,
        csv_path=csv_path,
    )
    store = store or Store(tmp_path / "engine.db")
    trader = Trader(symbol="BTC/USDT", config=cfg, exchange=exchange, store=store, counters=Counter())
    asyncio.run(exchange.connect(["BTC/USDT"]))
    return trader, exchange, store


def trader_on(exchange, tmp_path: Path, config: dict | None = None, *, store: Store | None = None) -> Trader:
    """A trader on any Exchange (a scripted one, usually), with the small grid of these tests."""
    cfg = parse_config(
        {
            "grid": {"price_interval": 10, "order_quote_size": 100, "buy_window": 3, "sell_window": 3, "max_layers": 5},
            "risk": {"rapid_decline": {"enabled": False}},
            **(config or {}),
        }
    )
    store = store or Store(tmp_path / "engine.db")
    return Trader(symbol="BTC/USDT", config=cfg, exchange=exchange, store=store, counters=Counter())


def run_steps(trader: Trader, count: int) -> None:
    async def go():
        await trader.start()
        for _ in range(count):
            await trader.step()

    asyncio.run(go())


def write_platform(
    data_dir: Path, *, secret: str = "proxy-secret-for-tests", max_pairs: int | None = 5, adaptive_strategy: bool = True
) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "platform.yaml").write_text(
        yaml.safe_dump(
            {
                "instance_id": "qm-test01-1700000000",
                "owner": 1,
                "max_trading_pairs": max_pairs,
                "proxy_secret": secret,
                "console_url": "https://portal.test/instances/qm-test01-1700000000",
                "adaptive_strategy": adaptive_strategy,
            }
        )
    )
    return secret


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_engine(data_dir: Path, port: int, *, env: dict | None = None, output=subprocess.PIPE) -> subprocess.Popen:
    """`python -m quantmesh_engine` as the runtime starts it, its output captured (or sent to `output`)."""
    command = [
        sys.executable,
        "-m",
        "quantmesh_engine",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
