"""The backup file: a gzipped tar of the instance's data files and a manifest of their checksums.

Secrets are encrypted with the portal's key before they enter the archive, so a copied backup file
reveals no exchange key. Reading checks every checksum before anything is restored.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
import tempfile
from pathlib import Path

from cryptography.fernet import InvalidToken
from django.utils.translation import gettext as _

from quantmesh.crypto import decrypt, encrypt

FORMAT = 1
DATABASE = "engine.db"
CONFIG = "config.yaml"
SECRETS = "secrets.yaml"
ENGINE_SECRETS = "secrets.enc"  # on the engine's volume: sealed with the instance's own secrets key
ENCRYPTED_SUFFIX = ".enc"


class BackupError(Exception):
    """A backup that cannot be taken or read; the message says what is wrong."""


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def database_standalone(database: bytes) -> bytes:
    """The database marked as a plain rollback-journal file (header bytes 18-19: 1, not WAL's 2), so
    it opens anywhere without a write-ahead log beside it; the engine turns WAL on again at start."""
    if len(database) > 19 and database[18:20] == b"\x02\x02":
        return database[:18] + b"\x01\x01" + database[20:]
    return database


def database_consolidated(database: bytes, wal: bytes | None) -> bytes:
    """One self-contained database file from a stopped engine's database and write-ahead log."""
    if not wal:
        return database_standalone(database)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / DATABASE
        path.write_bytes(database)
        Path(f"{path}-wal").write_bytes(wal)
        db = sqlite3.connect(path)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            copy = sqlite3.connect(":memory:")
            db.backup(copy)
            return database_standalone(copy.serialize())
        finally:
            db.close()


def build(files: dict[str, bytes], *, instance_id: str, created_at: str) -> bytes:
    stored = dict(files)
    if SECRETS in stored:
        stored[SECRETS + ENCRYPTED_SUFFIX] = encrypt(stored.pop(SECRETS).decode()).encode()
    manifest = {
        "format": FORMAT,
        "instance_id": instance_id,
        "created_at": created_at,
        "files": {name: {"sha256": checksum(data), "size": len(data)} for name, data in stored.items()},
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in [("manifest.json", json.dumps(manifest, indent=2).encode()), *stored.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def read(blob: bytes, *, expected_sha256: str | None = None) -> tuple[dict[str, bytes], dict]:
    """The files of a backup (secrets decrypted) and its manifest; BackupError when anything is off."""
    if expected_sha256 is not None and checksum(blob) != expected_sha256:
        raise BackupError(_("the backup file is corrupt: its checksum does not match the one recorded"))
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as archive:
            members = {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError) as error:
        raise BackupError(_("the backup file is corrupt: %(error)s") % {"error": error}) from None
    try:
        manifest = json.loads(members.pop("manifest.json"))
    except (KeyError, ValueError):
        raise BackupError(_("the backup file is corrupt: its manifest is missing or unreadable")) from None
    if manifest.get("format") != FORMAT:
        raise BackupError(_("unknown backup format %(format)r") % {"format": manifest.get("format")})
    for name, expected in manifest.get("files", {}).items():
        if name not in members or checksum(members[name]) != expected["sha256"]:
            raise BackupError(_("the backup file is corrupt: %(name)s is missing or altered") % {"name": name})
    if DATABASE not in members:
        raise BackupError(_("the backup holds no engine database"))
    encrypted = members.pop(SECRETS + ENCRYPTED_SUFFIX, None)
    if encrypted is not None:
        try:
            members[SECRETS] = decrypt(encrypted.decode()).encode()
        except InvalidToken:
            raise BackupError(_("the backup's secrets cannot be decrypted with this portal's key")) from None
    db_check = database_check(members[DATABASE])
    if db_check != "ok":
        raise BackupError(_("the backup's database is damaged: %(problem)s") % {"problem": db_check})
    return members, manifest


def database_check(database: bytes) -> str:
    try:
        db = sqlite3.connect(":memory:")
        db.deserialize(database)
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as error:
        return str(error)
