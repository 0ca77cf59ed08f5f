"""Request body parsers: the API speaks JSON only.

The manual's curl lines send JSON with `-d` and no Content-Type, which curl labels
application/x-www-form-urlencoded; such bodies are parsed as JSON so those lines work as
written. Any other media type is answered with 415.
"""

from __future__ import annotations

import json

from rest_framework import parsers
from rest_framework.exceptions import ParseError


def _loads(stream, encoding: str):
    raw = stream.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw.decode(encoding))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParseError(f"Malformed JSON body: {exc}") from None
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
