"""Where qm keeps the portal's address, the token and preferences: one JSON file, readable by the
user only (0600, in a 0700 directory), under $QM_CONFIG_DIR or $XDG_CONFIG_HOME/quantmesh."""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULTS = {"url": "http://127.0.0.1:8000", "output": "table"}
SETTABLE = {"url": "the portal's address", "output": "table or json"}


def config_dir() -> Path:
    if os.environ.get("QM_CONFIG_DIR"):
        return Path(os.environ["QM_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "quantmesh"


def config_path() -> Path:
    return config_dir() / "config.json"


def load() -> dict:
    try:
        stored = json.loads(config_path().read_text())
    except FileNotFoundError:
        stored = {}
    return {**DEFAULTS, **stored}


def save(config: dict) -> None:
    directory = config_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    path = config_path()
    temporary = path.with_suffix(".tmp")
    # Created 0600 from the start: the token is never readable by others, not even for a moment.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(config, handle, indent=2)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
