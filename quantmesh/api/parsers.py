"""Request body parsers: the API speaks JSON only.

The manual's curl lines send JSON with `-d` and no Content-Type, which curl labels
application/x-www-form-urlencoded; such bodies are parsed as JSON so those lines work as
written. Any other media type is answered with 415. Bodies nested deeper than MAX_JSON_DEPTH
are refused with 400 (Python's parser would otherwise exhaust its recursion limit: a 500).
"""

from __future__ import annotations

import json

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_JSON_DEPTH = 32  # no request of this API nests deeper than a handful of levels


def json_depth_exceeded(data, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when `data` nests lists and objects deeper than `limit` (iterative: no recursion)."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            pending.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return False


def _loads(stream, encoding: str):
    raw = stream.read()
    if not raw.strip():
        return {}
    too_deep = ParseError(f"The JSON body is nested too deeply (more than {MAX_JSON_DEPTH} levels).")
    try:
        data = json.loads(raw.decode(encoding))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParseError(f"Malformed JSON body: {exc}") from None
    except RecursionError:
        raise too_deep from None
    if json_depth_exceeded(data):
        raise too_deep
    if not isinstance(data, dict):
        raise ParseError("The JSON body must be an object.")
    return data


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        return _loads(stream, encoding)


class CurlFormJSONParser(parsers.BaseParser):
    media_type = "application/x-www-form-urlencoded"

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        return _loads(stream, encoding)
