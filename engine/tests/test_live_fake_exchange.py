"""The real engine process trading live, through unmodified ccxt, against the fake exchange.

Black box: the engine runs as `python -m quantmesh_engine` with QM_ENGINE_EXCHANGE_API_URL pointing
its ccxt at the fake; the tests read the engine only through its HTTP API (status, trade export,
database backup) and compare with the exchange's ledger, which is the authority for every fill:
each exchange trade is booked exactly once, and the engine's position equals the exchange's
balance change. Each scripted fault runs on the Binance and the OKX dialect.
"""

from __future__ import annotations

import csv
import io
import json
import random
import signal
import sqlite3
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml
from engine_testkit import free_port, start_engine, write_platform
from fake_exchange import FakeExchangeServer, Ledger
from quantmesh_engine.secrets import ExchangeSecrets, SecretStore

KEY, SECRET, PASSPHRASE = "live-key-7a1c9e", "live-secret-4b2d8f", "live-pass-6e3a0b"
START_PRICE = 30000.0
INTERVAL = 150.0  # 0.5 %: well above the 0.2 % round trip of the fake's 0.1 % fees
BUY_WINDOW = 3
DIALECTS = ["binance", "okx"]


def level_price(level: int) -> float:
    """The engine's grid anchors on the first price it sees (START_PRICE)."""
    return START_PRICE + level * INTERVAL


class LiveEngine:
    """The engine process in live mode, started, killed and restarted on one data directory."""

    def __init__(self, root: Path, exchange_id: str, fake: FakeExchangeServer, config: dict | None = None):
        self.data_dir = root / "data"
        self.log_path = root / "engine.log"
        self.proxy_secret = write_platform(self.data_dir)
        SecretStore(self.data_dir, None).save(ExchangeSecrets(KEY, SECRET, PASSPHRASE))  # no run keys: local mode
        settings = {
            "exchange": {"name": exchange_id},
            "symbols": ["BTC/USDT"],
            "grid": {
                "price_interval": INTERVAL,
                "order_quote_size": 60.0,
                "buy_window": BUY_WINDOW,
                "sell_window": 3,
                "max_layers": 5,
                "post_only": True,
            },
            "risk": {"rapid_decline": {"enabled": False}},
            "loop": {"poll_seconds": 0.1, "reconcile_seconds": 1},
            "cancel_orders_on_stop": False,
        }
        for section, values in (config or {}).items():
            settings[section] = {**settings.get(section, {}), **values}
        (self.data_dir / "config.yaml").write_text(yaml.safe_dump(settings))
        self.fake = fake
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self, *, wait: bool = True) -> None:
        with self.log_path.open("ab") as log:
            self.process = start_engine(
                self.data_dir, self.port, env={"QM_ENGINE_EXCHANGE_API_URL": self.fake.url}, output=log
            )
        if wait:
            wait_for(lambda: self.status().get("state") == "running", 30, "the engine to trade", self)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def get(self, path: str) -> bytes:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers={"X-QuantMesh-Proxy-Secret": self.proxy_secret}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read()

    def status(self) -> dict:
        try:
            return json.loads(self.get("/api/status"))
        except OSError:
            return {}

    def position(self) -> float:
        return self.status()["symbols"][0]["position"]

    def fills(self) -> list[dict]:
        return list(csv.DictReader(io.StringIO(self.get("/api/export/trades").decode())))

    def trade_ids(self) -> list[str]:
        """Exchange trade ids of the booked fills, from the database backup the portal takes."""
        path = self.data_dir.parent / "backup.db"
        path.write_bytes(self.get("/api/backup/database"))
        with sqlite3.connect(path) as db:
            return [row[0] for row in db.execute("SELECT trade_id FROM fills")]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def wait_for(condition, seconds: float, what: str, engine: LiveEngine | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}\n{engine.log() if engine else ''}")


def fill_key(side: str, price: float, amount: float) -> tuple:
    return side, round(float(price), 2), round(float(amount), 8)


def booked_and_traded(engine: LiveEngine) -> tuple[Counter, Counter]:
    booked = Counter(fill_key(f["side"], f["price"], f["amount"]) for f in engine.fills())
    with engine.fake.ledger.lock:
        traded = Counter(fill_key(t.side, t.price, t.amount) for t in engine.fake.ledger.trades)
    return booked, traded


def assert_books_match_the_exchange(engine: LiveEngine, *, settle_seconds: float = 8) -> None:
    """Every exchange trade booked once (none lost, none twice, none made up), trade ids unique, and
    the engine's position equal to the exchange's change in the base coin."""
    ledger = engine.fake.ledger
    deadline = time.monotonic() + settle_seconds
    while time.monotonic() < deadline:
        booked, traded = booked_and_traded(engine)
        if booked == traded:
            break
        time.sleep(0.2)
    booked, traded = booked_and_traded(engine)
    assert traded, f"the scenario made no trade on the exchange: it proves nothing\n{engine.log()}"
    lost, extra = traded - booked, booked - traded
    assert not lost and not extra, (
        f"fills lost (on the exchange, not booked): {dict(lost)}; "
        f"booked but not traded once on the exchange (duplicates or made up): {dict(extra)}\n{engine.log()}"
    )
    trade_ids = engine.trade_ids()
    assert [i for i, n in Counter(trade_ids).items() if n > 1] == [], "a trade id booked twice"
    with ledger.lock:
        assert sorted(trade_ids) == sorted(t.id for t in ledger.trades)
    assert engine.position() == pytest.approx(ledger.balance_change(ledger.base), abs=1e-8), (
        "the engine's position differs from the exchange's balance change"
    )


def resting(ledger: Ledger, side: str) -> list[float]:
    return sorted(o.price for o in ledger.open_orders() if o.side == side)


@pytest.fixture
def fake():
    server = FakeExchangeServer(Ledger(price=START_PRICE), api_key=KEY, secret=SECRET, passphrase=PASSPHRASE).start()
    yield server
    server.stop()
    assert not server.unhandled, f"the fake exchange lacks routes ccxt used: {server.unhandled}"


@pytest.fixture
def live(tmp_path, fake, request):
    engines: list[LiveEngine] = []

    def make(exchange_id: str, config: dict | None = None) -> LiveEngine:
        engine = LiveEngine(tmp_path, exchange_id, fake, config)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop()


def start_with_resting_buys(live, exchange_id: str, config: dict | None = None) -> LiveEngine:
    engine = live(exchange_id, config)
    engine.start()
    wait_for(lambda: len(resting(engine.fake.ledger, "buy")) == BUY_WINDOW, 15, "the first buys", engine)
    return engine


# --- scenarios -------------------------------------------------------------------------------------


@pytest.mark.parametrize("exchange_id", DIALECTS)
def test_fill_just_before_cancel_is_booked(live, fake, exchange_id):
    """The price runs up three levels: the engine cancels the buys it left behind, but each filled
    just before its cancel arrived (the exchange answers "order not found")."""
    engine = start_with_resting_buys(live, exchange_id)
    fake.ledger.scenarios.fill_before_cancel = True
    fake.ledger.set_price(START_PRICE + 3 * INTERVAL + 50)
    wait_for(lambda: len(fake.ledger.trades) >= BUY_WINDOW, 15, "the cancels (filled first)", engine)
    fake.ledger.scenarios.fill_before_cancel = False
    assert_books_match_the_exchange(engine)


@pytest.mark.parametrize("exchange_id", DIALECTS)
def test_partial_fills_are_booked_once_across_a_restart(live, fake, exchange_id):
    engine = start_with_resting_buys(live, exchange_id)
    fake.ledger.scenarios.partial_fill_fraction = 0.4
    below = level_price(-1) - 10
    for _ in range(2):  # two partial fills of the nearest buy, 40 % each
        fake.ledger.set_price(below)
    wait_for(lambda: len(engine.fills()) >= 2, 10, "the partial fills to be booked", engine)
    engine.kill()
    engine.start()
    fake.ledger.set_price(below)  # the last 20 %
    time.sleep(2)
    assert_books_match_the_exchange(engine)


@pytest.mark.parametrize("exchange_id", DIALECTS)
def test_a_trade_reported_late_is_still_booked(live, fake, exchange_id):
    """The order is gone from the open orders before its trade shows in my-trades (the exchange's
    trade feed lags): reconciliation must not forget it as canceled."""
    engine = start_with_resting_buys(live, exchange_id)
    fake.ledger.scenarios.trade_delay_requests = 25
    fake.ledger.set_price(level_price(-1) - 10)
    time.sleep(4)  # several reconcile passes while the trade is hidden
    assert_books_match_the_exchange(engine, settle_seconds=15)


@pytest.mark.parametrize("exchange_id", DIALECTS)
def test_fills_while_the_engine_is_down_are_booked_after_restart(live, fake, exchange_id):
    engine = start_with_resting_buys(live, exchange_id)
    engine.kill()
    fake.ledger.set_price(level_price(-2) - 10)  # two buys fill while no engine runs
    fake.ledger.set_price(level_price(-1) - 50)  # both layers' sells (29850, 30000) are above the price
    engine.start()
    assert_books_match_the_exchange(engine)
    wait_for(lambda: len(resting(fake.ledger, "sell")) == 2, 10, "sells for the two layers bought while down", engine)


@pytest.mark.parametrize("exchange_id", DIALECTS)
def test_an_order_whose_reply_was_lost_is_recovered(live, fake, exchange_id):
    """The connection drops after the exchange placed the order: the engine never got its id. The
    order fills; the engine must find it (by its client id) and book the fill, and not place the
    same level twice."""
    fake.ledger.scenarios.drop_replies = 1
    engine = live(exchange_id)
    engine.start(wait=False)  # the fill must come before the engine's retry (1 s back-off)
    wait_for(lambda: fake.ledger.scenarios.drop_replies == 0, 30, "the first order placement", engine)
    with fake.ledger.lock:
        lost = max(fake.ledger.orders.values(), key=lambda o: int(o.id))
    fake.ledger.fill_resting(lost.id)
    time.sleep(3)  # the engine recovers from the error and reconciles
    buys = resting(fake.ledger, "buy")
    assert len(buys) == len(set(buys)), f"a level placed twice: {buys}"
    assert_books_match_the_exchange(engine)


@pytest.mark.parametrize("exchange_id", DIALECTS)
def test_a_market_order_is_booked_at_its_real_price(live, fake, exchange_id):
    """Stop-loss sells at market; the order reply carries no fill (as Bybit's and KuCoin's do, and
    OKX's always): the fill is booked at the price it traded at, never 0."""
    fake.ledger.scenarios.market_reply_without_fills = True
    engine = start_with_resting_buys(live, exchange_id, {"risk": {"stop_loss_pct": 2.0}})
    fake.ledger.set_price(level_price(-3) - 10)  # three buys fill
    wait_for(lambda: engine.position() > 0, 10, "the buys to be booked", engine)
    fake.ledger.set_price(28500.0)  # far under the stop
    wait_for(
        lambda: any(o.type == "market" for o in fake.ledger.orders.values()), 10, "the stop-loss market sell", engine
    )
    with fake.ledger.lock:
        market_prices = {t.price for t in fake.ledger.trades if fake.ledger.orders[t.order_id].type == "market"}
    assert market_prices == {28500.0}
    time.sleep(2)
    sells = [float(f["price"]) for f in engine.fills() if f["side"] == "sell"]
    assert sells and all(price == 28500.0 for price in sells), f"market sell booked at {sells}"
    assert_books_match_the_exchange(engine)


@pytest.mark.parametrize("exchange_id", DIALECTS)
def test_buy_fees_in_the_base_coin_are_netted(live, fake, exchange_id):
    """A buy's fee is taken from the coins bought: the layer holds less than was bought, and its
    sell must offer what is really there (or it fails for lack of funds and the layer never sells)."""
    fake.ledger.scenarios.buy_fee_currency = "base"
    engine = start_with_resting_buys(live, exchange_id)
    fake.ledger.set_price(level_price(-2) - 10)  # two buys fill, fees in BTC
    wait_for(lambda: len(engine.fills()) >= 2, 10, "the buys to be booked", engine)
    time.sleep(2)  # the layers' sells are placed (or refused for funds, and retried)
    fake.ledger.set_price(START_PRICE + 10)  # both sells (29850, 30000) are reached
    time.sleep(2)
    with fake.ledger.lock:
        sold = sum(t.amount for t in fake.ledger.trades if t.side == "sell")
        bought_net = sum(t.amount - t.fee for t in fake.ledger.trades if t.side == "buy")
    assert sold == pytest.approx(bought_net, abs=2e-5), "the layers were not sold (their sells failed for funds)"
    assert_books_match_the_exchange(engine)


@pytest.mark.parametrize("exchange_id", DIALECTS)
def test_post_only_is_never_downgraded(live, fake, exchange_id):
    """The price jumps through the engine's buys while it places more: every limit order arrives
    post-only, none trades as a taker, and a refused one is not re-sent without the flag."""
    engine = start_with_resting_buys(live, exchange_id)
    path = [level_price(-1) + 5, level_price(-2) - 5, level_price(-1) + 5, START_PRICE - 5, level_price(-3) - 5]
    fake.play_price_path(path * 3, 0.05)
    time.sleep(3)
    fake.stop_price_path()
    with fake.ledger.lock:
        limits = [o for o in fake.ledger.orders.values() if o.type == "limit"]
        taker = [t for t in fake.ledger.trades if not t.maker]
    assert limits and all(o.post_only for o in limits), "a limit order was sent without post-only"
    assert taker == []
    assert_books_match_the_exchange(engine)


@pytest.mark.parametrize("exchange_id", DIALECTS)
def test_client_ids_the_exchange_rewrites_are_still_recognised(live, fake, exchange_id):
    """The exchange stores and echoes our ids with a prefix (Gate.io's `t-`): reconciliation must still
    know its orders, not forget them and place the same levels again (3 -> 6 -> 9 resting buys)."""
    fake.ledger.scenarios.client_id_echo_prefix = "t-"
    engine = start_with_resting_buys(live, exchange_id)
    time.sleep(5)  # five reconcile passes
    buys = resting(fake.ledger, "buy")
    assert buys == sorted({level_price(-1), level_price(-2), level_price(-3)}), f"resting buys: {buys}"
    fake.ledger.set_price(level_price(-1) - 10)
    assert_books_match_the_exchange(engine)


@pytest.mark.timeout(600)  # 270-370 s on this shared 2-core machine: each start imports ccxt and loads markets
def test_soak_fifty_sigkills(live, fake):
    """50 runs on a seeded random walk, each ended by SIGKILL at a seeded random moment; then one
    last run settles. The books must equal the exchange's: no lost fill, no trade id twice, the
    position equal to the exchange's balance change."""
    rng = random.Random(16)
    engine = live("binance")
    walk, price = [], START_PRICE
    for _ in range(400):
        price = min(max(price + rng.choice((-1, 1)) * rng.uniform(20, 120), 29100.0), 30900.0)
        walk.append(round(price, 2))
    fake.play_price_path(walk, 0.1, repeat=True)
    started = time.monotonic()
    for _ in range(50):
        if rng.random() < 0.2:  # killed while starting: importing, loading markets, reconciling
            engine.start(wait=False)
            time.sleep(rng.uniform(0.2, 2.0))
        else:  # killed while trading: placing, canceling, booking
            engine.start()
            time.sleep(rng.uniform(0.05, 2.0))
        engine.kill()
    fake.stop_price_path()
    soak_seconds = time.monotonic() - started
    engine.start()
    time.sleep(3)
    print(f"soak: 50 SIGKILL runs in {soak_seconds:.0f} s, {len(fake.ledger.trades)} exchange trades")
    assert_books_match_the_exchange(engine, settle_seconds=15)


def test_candles_come_from_the_exchange_through_ccxt(live, fake):
    """GET /api/candles on a live engine: ccxt fetch_ohlcv against the exchange's klines."""
    engine = start_with_resting_buys(live, "binance")
    for price in (START_PRICE + 5, START_PRICE - 7, START_PRICE + 2):
        fake.ledger.set_price(price)
    body = json.loads(engine.get("/api/candles?symbol=BTC/USDT&timeframe=1m&limit=10"))
    assert body["source"] == "exchange" and body["symbol"] == "BTC/USDT" and body["timeframe"] == "1m"
    assert body["candles"] == [list(map(float, row)) for row in fake.ledger.candles(60_000, None, 10)][-10:]
    assert body["candles"][-1][4] == START_PRICE + 2
