"""Encryption of secrets the portal must keep (Fernet). The key is QM_ENCRYPTION_KEY, or one
derived from SECRET_KEY when unset, so the embedded default needs no extra setting."""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet
from django.conf import settings


@cache
def _fernet() -> Fernet:
    key = settings.QM_ENCRYPTION_KEY
    if not key:
        digest = hashlib.sha256(f"quantmesh-secrets:{settings.SECRET_KEY}".encode()).digest()
        key = base64.urlsafe_b64encode(digest).decode()
    return Fernet(key)


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()
