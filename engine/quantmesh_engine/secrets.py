"""Exchange credentials, never logged or returned, and never in plaintext on the data volume.

The portal hands the engine its run keys at start, outside the volume (a tmpfs file, or a Docker
secret on swarm): the proxy secret and `secrets_key`, a Fernet key under which the credentials
are kept on the volume (secrets.enc). A plaintext secrets.yaml left by an older engine is
encrypted and deleted on first load. Only an engine run without run keys (local development)
keeps plaintext secrets.yaml (mode 0600).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.fernet import Fernet

PLAIN_NAME = "secrets.yaml"
ENCRYPTED_NAME = "secrets.enc"

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


def _parse(text: str | bytes) -> ExchangeSecrets:
    data = yaml.safe_load(text) or {}
    return ExchangeSecrets(**{name: str(data.get(name) or "") for name in FIELDS})


def _write(path: Path, content: bytes) -> None:
    """Write with mode 0600 from the first byte (never a window where the file is readable)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    os.replace(tmp, path)
    os.chmod(path, 0o600)


class SecretStore:
    """The credentials in `data_dir`: encrypted with `key` when the portal gave one."""

    def __init__(self, data_dir: Path, key: str | None):
        self.plain_path = data_dir / PLAIN_NAME
        self.encrypted_path = data_dir / ENCRYPTED_NAME
        self.fernet = Fernet(key) if key else None

    def load(self) -> ExchangeSecrets:
        if self.fernet is None:
            return _parse(self.plain_path.read_text()) if self.plain_path.exists() else ExchangeSecrets()
        if self.plain_path.exists():  # written by an engine before run keys: encrypt it, drop the plaintext
            self.save(_parse(self.plain_path.read_text()))
        if not self.encrypted_path.exists():
            return ExchangeSecrets()
        return _parse(self.fernet.decrypt(self.encrypted_path.read_bytes()))

    def save(self, secrets: ExchangeSecrets) -> None:
        document = yaml.safe_dump({name: getattr(secrets, name) for name in FIELDS}).encode()
        if self.fernet is None:
            _write(self.plain_path, document)
            return
        _write(self.encrypted_path, self.fernet.encrypt(document))
        self.plain_path.unlink(missing_ok=True)
