"""The fake exchange as a real HTTP server on 127.0.0.1, in a thread the tests start and stop.

One server speaks both dialects (Binance spot under /api/v3, OKX v5 under /api/v5) over one ledger;
the engine's ccxt reaches it through QM_ENGINE_EXCHANGE_API_URL. The ledger outlives any engine
process the tests kill and restart, as a real exchange would."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from .binance import BinanceApi
from .ledger import Ledger
from .okx import OkxApi


class FakeExchangeServer:
    def __init__(self, ledger: Ledger, *, api_key: str, secret: str, passphrase: str):
        self.ledger = ledger
        self.unhandled: list[str] = []  # requests no route answers: a harness gap, not an engine one
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._path_thread: threading.Thread | None = None
        self._path_stop = threading.Event()
        self._apis = [
            BinanceApi(ledger, api_key=api_key, secret=secret, drop_reply=self._drop_reply),
            OkxApi(ledger, api_key=api_key, secret=secret, passphrase=passphrase, drop_reply=self._drop_reply),
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _drop_reply(self, request: web.Request) -> bool:
        """Cut the connection after the order was placed (the client sees a network error)."""
        if self.ledger.take_drop():
            request.transport.abort()
            return True
        return False

    def _app(self) -> web.Application:
        @web.middleware
        async def record_unhandled(request: web.Request, handler):
            try:
                return await handler(request)
            except web.HTTPNotFound:
                self.unhandled.append(f"{request.method} {request.path_qs}")
                raise

        app = web.Application(middlewares=[record_unhandled])
        for api in self._apis:
            app.add_routes(api.routes())
        return app

    def start(self) -> FakeExchangeServer:
        started = threading.Event()

        def serve():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._runner = web.AppRunner(self._app(), access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="fake-exchange", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the fake exchange did not start")
        return self

    def stop(self) -> None:
        self.stop_price_path()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def play_price_path(self, prices: list[float], step_seconds: float, *, repeat: bool = False) -> None:
        """Move the price along `prices`, one step every `step_seconds`, in the background."""
        self.stop_price_path()
        self._path_stop.clear()

        def play():
            while True:
                for price in prices:
                    if self._path_stop.wait(step_seconds):
                        return
                    self.ledger.set_price(price)
                if not repeat:
                    return

        self._path_thread = threading.Thread(target=play, name="fake-exchange-prices", daemon=True)
        self._path_thread.start()

    def stop_price_path(self) -> None:
        if self._path_thread is not None:
            self._path_stop.set()
            self._path_thread.join(10)
            self._path_thread = None
