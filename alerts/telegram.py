"""Telegram's Bot API: sendMessage over HTTPS. The bot token is part of the URL, so no error or log
line here ever contains the URL."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from django.conf import settings


class TelegramError(Exception):
    pass


def send_message(*, chat_id: str, text: str) -> None:
    if not settings.QM_TELEGRAM_BOT_TOKEN:
        raise TelegramError("no Telegram bot is configured (QM_TELEGRAM_BOT_TOKEN)")
    request = urllib.request.Request(  # noqa: S310 (the Bot API, or a test server)
        f"{settings.QM_TELEGRAM_API_URL.rstrip('/')}/bot{settings.QM_TELEGRAM_BOT_TOKEN}/sendMessage",
        data=json.dumps({"chat_id": chat_id, "text": text, "disable_web_page_preview": True}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            body = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            description = json.loads(error.read()).get("description", "")
        except ValueError:
            description = ""
        raise TelegramError(f"Telegram answered {error.code} {description}".strip()) from None
    except (OSError, ValueError) as error:
        raise TelegramError(f"Telegram could not be reached: {type(error).__name__}") from None
    if not body.get("ok"):
        raise TelegramError(f"Telegram refused the message: {body.get('description', 'no reason given')}")
