"""One line per event on stdout: `2026-11-24T19:57:29.123Z INFO message key=value`."""

from __future__ import annotations

import logging
import sys
import time


class LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields = getattr(record, "fields", None) or {}
        extra = "".join(f" {key}={value}" for key, value in fields.items())
        line = f"{stamp}.{int(record.msecs):03d}Z {record.levelname} {record.getMessage()}{extra}"
        if record.exc_info:
            # Keep one event on one line: the exception's type and message, not the trace.
            error = record.exc_info[1]
            line += f" error={type(error).__name__}: {error}".replace("\n", " ")
        return line


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(LineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiohttp.access", "ccxt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def event(logger: logging.Logger, level: int, message: str, **fields) -> None:
    logger.log(level, message, extra={"fields": fields})
