"""Exchange credentials: secrets.yaml on the data volume, mode 0600, never logged or returned."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

FIELDS = ("api_key", "secret", "passphrase")


@dataclass(frozen=True)
class ExchangeSecrets:
    api_key: str = ""
    secret: str = ""
    passphrase: str = ""

    def __repr__(self) -> str:  # a stray log line or traceback must not print them
        return f"ExchangeSecrets(api_key={mask(self.api_key)!r}, secret=****, passphrase=****)"

    __str__ = __repr__

    @property
    def present(self) -> bool:
        return bool(self.api_key and self.secret)

    def masked(self) -> dict[str, str]:
        return {name: mask(getattr(self, name)) for name in FIELDS}

    def values(self) -> list[str]:
        return [getattr(self, name) for name in FIELDS if getattr(self, name)]


def mask(value: str) -> str:
    return f"****{value[-4:]}" if len(value) >= 8 else ("****" if value else "")


def load_secrets(path: Path) -> ExchangeSecrets:
    if not path.exists():
        return ExchangeSecrets()
    data = yaml.safe_load(path.read_text()) or {}
    return ExchangeSecrets(**{name: str(data.get(name) or "") for name in FIELDS})


def save_secrets(path: Path, secrets: ExchangeSecrets) -> None:
    """Write with mode 0600 from the first byte (never a window where the file is readable)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump({name: getattr(secrets, name) for name in FIELDS}, handle)
    os.replace(tmp, path)
    os.chmod(path, 0o600)
