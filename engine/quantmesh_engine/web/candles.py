"""GET /api/candles: recent OHLCV candles of a traded symbol, the strategy advisor's prices.

From the exchange (ccxt fetch_ohlcv) when the engine trades live, from the paper exchange's own
price path otherwise. `?symbol=BTC/USDT&timeframe=1m&limit=N` (N at most 10,000).
"""

from __future__ import annotations

from aiohttp import web

from ..exchanges.base import ExchangeError
from ..exchanges.paper import PaperExchange
from .common import ENGINE_KEY, error_response

TIMEFRAMES = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}
CANDLES_MAX = 10_000


async def api_candles(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    query = request.query
    symbols = [trader.symbol for trader in engine.traders]
    symbol = query.get("symbol") or (symbols[0] if symbols else "")
    timeframe = query.get("timeframe", "1m")
    if timeframe not in TIMEFRAMES:
        message = f"timeframe: one of {', '.join(TIMEFRAMES)}."
        return error_response(400, "invalid_request", message, timeframe=timeframe[:20])
    try:
        limit = int(query.get("limit", "1000"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= CANDLES_MAX:
        message = f"limit: a whole number from 1 to {CANDLES_MAX}."
        return error_response(400, "invalid_request", message, limit=query.get("limit", "")[:20])
    exchange = engine.exchange
    if exchange is None or not symbols:
        return error_response(409, "not_trading", "The engine is not connected to its exchange; start it first.")
    if symbol not in symbols:
        message = f"symbol: {symbol[:40]!r} is not traded by this engine (it trades {', '.join(symbols)})."
        return error_response(400, "invalid_request", message, symbol=symbol[:40])
    try:
        candles = await exchange.fetch_candles(symbol, TIMEFRAMES[timeframe], limit)
    except NotImplementedError as error:
        return error_response(501, "not_supported", str(error))
    except ExchangeError as error:
        return error_response(502, "exchange_error", f"The exchange gave no candles: {error}")
    source = "paper" if isinstance(exchange, PaperExchange) else "exchange"
    return web.json_response({"symbol": symbol, "timeframe": timeframe, "source": source, "candles": candles})
