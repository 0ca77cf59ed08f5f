"""The image's HEALTHCHECK: GET /healthz on the port the engine (PID 1's child) was started with."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path


def engine_port() -> int:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"quantmesh_engine" in argv and b"--port" in argv:
            return int(argv[argv.index(b"--port") + 1])
    return 8080


def main() -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{engine_port()}/healthz", timeout=2) as response:  # noqa: S310
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
