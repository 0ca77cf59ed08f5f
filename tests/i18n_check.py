"""Find text a page shows in the wrong language: English words on a Chinese page, Chinese on an English
page. Used by the view tests (Django's client) and the browser journey (the rendered DOM).

Visible text and the attributes people read or hear (aria-label, placeholder, title, confirmations,
the labels live updates use) are checked; names that stay in Latin script in Chinese (the product,
units, protocols, exchanges, ids, addresses, paths) are allowed."""

from __future__ import annotations

import html
import re

# Words that are written in Latin script in Chinese text too (product names: "1Password" leaves "Password").
LATIN_IN_CHINESE = {
    # What customers type into the engine's configuration: exchange ids, the exchanges' own field name.
    "paper",
    "binance",
    "okx",
    "bybit",
    "Passphrase",
    "QuantMesh",
    "Cloud",
    "CPU",
    "MB",
    "GB",
    "GiB",
    "API",
    "URL",
    "ID",
    "CSV",
    "YAML",
    "CNAME",
    "DNS",
    "HTTPS",
    "Stripe",
    "PDF",
    "UTC",
    "Key",
    "Secret",
    "GET",
    "TOTP",
    "QR",
    "PnL",
    "Telegram",
    "Bot",
    "Email",
    "English",
    "Binance",
    "OKX",
    "Bybit",
    "Bitget",
    "Gate",
    "io",
    "Huobi",
    "KuCoin",
    "Kraken",
    "Bitfinex",
    "MEXC",
    "BingX",
    "Deribit",
    "BitMEX",
    "Authy",
    "Password",
    "BTC",
    "USDT",
    "ETH",
    "Google",
    "Authenticator",
    "Microsoft",
    "WebSocket",
    "Token",
    "d",
    "h",
    "min",
    "DEBUG",
    "INFO",
    "WARNING",
    "ERROR",
    "CRITICAL",
    "CNY",
    "USD",
    "Team",
    "qm",
    "s",
}
# Removed before looking at words: addresses, paths, ids, placeholders, code, numbers with units.
NOISE = re.compile(
    r"%\(\w+\)s|https?://\S+|wss?://\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+|(?<!\w)/[\w/.:?=&%…-]*|qm-[a-z0-9]+-\d+|qm_\w+"
    r"|\b(?:[\w-]+\.)+(?:com|io|cloud|localhost|local)\b|instance-[a-z0-9]+\S*|\b[0-9a-f]{8,}\b"
)
ATTRIBUTES = re.compile(r'\s(?:aria-label|placeholder|title|alt|data-confirm|data-label|data-[a-z-]+)="([^"]*)"')
SKIPPED_DATA = re.compile(
    r'\sdata-(?:instance|api|status|desired|state|tab|row|trading|state-label|action|autosubmit|local|level)="[^"]*"'
)
CJK = re.compile(r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]")
# The language switch names each language in itself.
LANGUAGE_NAMES = re.compile(r"<select id=\"lang-select\".*?</select>", re.S)


def readable_text(page_html: str) -> str:
    """The page's visible text and read-out attributes, without scripts, styles, code and the language switch."""
    text = LANGUAGE_NAMES.sub(" ", page_html)
    text = re.sub(r"<(script|style|code|pre|noscript)\b.*?</\1>", " ", text, flags=re.S | re.I)
    text = re.sub(r"<head\b.*?</head>", " ", text, flags=re.S | re.I)
    text = SKIPPED_DATA.sub(" ", text)
    attributes = " ".join(ATTRIBUTES.findall(text))
    body = re.sub(r"<[^>]+>", " ", text)
    return html.unescape(body + " " + attributes)


def untranslated(page_html: str, language: str) -> list[str]:
    """Words in the wrong language: Latin words on a zh-hans page, Chinese characters on an English page."""
    text = NOISE.sub(" ", readable_text(page_html))
    if language.startswith("zh"):
        words = re.findall(r"[A-Za-z][A-Za-z'’-]*", text)
        found = {word for word in words if word not in LATIN_IN_CHINESE and not word.isupper()}
        # The console addresses customers as 您, and Chinese text takes full-width punctuation.
        found |= set(re.findall(r".?你.?", text))
        found |= set(re.findall(r"[\u4e00-\u9fff][,:;?!]|[,;?!][\u4e00-\u9fff]", text))
        return sorted(found)
    return sorted(set(CJK.findall(text)))
