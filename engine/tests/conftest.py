"""Fixtures for the engine's tests (helpers live in engine_testkit.py). This folder is not a
package, so its module names cannot clash with the portal's `tests` package."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def data_dir(tmp_path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
