"""Encryption of secrets the portal keeps (exchange keys, engine proxy secrets, backups' secrets).

The keys are a list (MultiFernet): the first encrypts, every one decrypts, so a key can rotate
(`manage.py rotate_encryption_key` re-encrypts everything under the first). QM_ENCRYPTION_KEYS
sets them (production requires it); the embedded default keeps one random key in
var/encryption.key, made on first use. None of them comes from SECRET_KEY, so rotating SECRET_KEY
never makes a stored secret unreadable (a key derived from the embedded SECRET_KEY by earlier
versions is still accepted for decryption until the rotation command has run).
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from functools import cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

__all__ = ["InvalidToken", "decrypt", "encrypt", "reencrypt"]


def _key_file_key() -> str:
    path = Path(settings.QM_ENCRYPTION_KEY_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process may be writing it this instant
            if key := path.read_text().strip():
                return key
            time.sleep(0.02)
        raise
    key = Fernet.generate_key().decode()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def _legacy_key() -> str:
    digest = hashlib.sha256(f"quantmesh-secrets:{settings.SECRET_KEY}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


@cache
def _fernet() -> MultiFernet:
    keys = list(settings.QM_ENCRYPTION_KEYS) or [_key_file_key(), _legacy_key()]
    return MultiFernet([Fernet(key) for key in keys])


@receiver(setting_changed)
def _forget_keys(*, setting: str, **kwargs) -> None:
    if setting in {"QM_ENCRYPTION_KEYS", "QM_ENCRYPTION_KEY_FILE", "SECRET_KEY"}:
        _fernet.cache_clear()


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


def reencrypt(token: str) -> str:
    """The same secret under the first key (MultiFernet.rotate): InvalidToken if no key opens it."""
    return _fernet().rotate(token.encode()).decode()
