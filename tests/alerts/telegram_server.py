"""A stand-in for Telegram's Bot API on loopback: records every sendMessage, answers like Telegram
(`{"ok": true, "result": {...}}`), and can be told to fail the next requests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class TelegramServer:
    def __init__(self, token: str) -> None:
        self.token = token
        self.messages: list[dict] = []
        self.fail_next = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != f"/bot{server.token}/sendMessage":
                    return self._answer(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                if server.fail_next:
                    server.fail_next -= 1
                    return self._answer(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})
                server.messages.append(body)
                message = {
                    "message_id": len(server.messages),
                    "chat": {"id": int(body["chat_id"])},
                    "text": body["text"],
                }
                return self._answer(200, {"ok": True, "result": message})

            def _answer(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
