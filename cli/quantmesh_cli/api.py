"""A small client of the QuantMesh Cloud REST API (v1): JSON in and out, errors in the API's shape."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlencode

API_VERSION = "1"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Api:
    def __init__(self, url: str, token: str | None = None, timeout: float = 120):
        if not url.startswith(("http://", "https://")):
            raise ApiError(0, "invalid_url", f"{url}: the portal's address starts with https:// (or http://)")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict | None = None, query: dict | None = None):
        """(parsed JSON body, response headers)."""
        url = f"{self.url}{path}" + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        # The scheme is http(s): checked in __init__.
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read()
                return (json.loads(raw) if raw else None), response.headers
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                detail = json.loads(raw)["error"]
                raise ApiError(error.code, detail["code"], detail["message"]) from None
            except (ValueError, KeyError, TypeError):
                raise ApiError(error.code, "http_error", f"HTTP {error.code}") from None
        except urllib.error.URLError as error:
            raise ApiError(0, "unreachable", f"{self.url} does not answer ({error.reason})") from None

    def get(self, path: str, **query):
        return self.request("GET", path, query=query or None)[0]

    def post(self, path: str, body: dict | None = None, **query):
        return self.request("POST", path, body=body, query=query or None)[0]

    def delete(self, path: str, **query):
        return self.request("DELETE", path, query=query or None)[0]

    def get_all(self, path: str, **query) -> list:
        """Every page of a list: the API answers the first page and names the next in X-Next-Cursor."""
        items: list = []
        while True:
            page, headers = self.request("GET", path, query=query or None)
            items.extend(page)
            cursor = headers.get("X-Next-Cursor")
            if not cursor:
                return items
            query = {**query, "cursor": cursor}

    def websocket_url(self, path: str) -> str:
        return ("wss://" if self.url.startswith("https://") else "ws://") + self.url.split("://", 1)[1] + path
