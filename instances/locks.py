"""One converge per instance at a time, across workers.

On PostgreSQL a session advisory lock: the database releases it by itself when the holder's
connection dies, so a worker killed mid-task never leaves an instance locked. The embedded
default (SQLite, tasks in one process) uses an in-process lock.
"""

from __future__ import annotations

import threading
import time
import zlib
from contextlib import contextmanager

from django.db import connection

_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()


def _key(instance_id: str) -> int:
    # Advisory locks take a bigint; a stable 32-bit hash in its own namespace is plenty.
    return 0x51_4D_0000_0000 | zlib.crc32(instance_id.encode())


@contextmanager
def converge_lock(instance_id: str, *, timeout: float):
    deadline = time.monotonic() + timeout
    if connection.vendor == "postgresql":
        key = _key(instance_id)
        with connection.cursor() as cursor:
            while True:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
                if cursor.fetchone()[0]:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"converge of {instance_id} is busy")
                time.sleep(0.1)
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        return
    with _local_guard:
        lock = _local_locks.setdefault(instance_id, threading.Lock())
    if not lock.acquire(timeout=timeout):
        raise TimeoutError(f"converge of {instance_id} is busy")
    try:
        yield
    finally:
        lock.release()
