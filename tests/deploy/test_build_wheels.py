"""deploy/build-wheels.sh on a fresh machine: an empty wheel cache must be filled, not taken for a
full one (it once was, and the engine image was built without its dependencies)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_engine_wheelhouse_from_an_empty_cache_holds_every_pinned_dependency(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "deploy").mkdir(parents=True)
    shutil.copy(ROOT / "deploy" / "build-wheels.sh", checkout / "deploy")
    skip = shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT / "engine", checkout / "engine", ignore=skip)
    cache = tmp_path / "empty-cache"
    result = subprocess.run(
        ["bash", "deploy/build-wheels.sh", "engine"],
        cwd=checkout, capture_output=True, text=True, timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON": sys.executable, "QM_WHEEL_CACHE": str(cache)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    wheels = {p.name.split("-")[0].lower().replace("_", "-") for p in (checkout / "wheels" / "engine").glob("*.whl")}
    pinned = {
        line.split("==")[0].strip().lower().replace("_", "-")
        for line in (ROOT / "engine" / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.lstrip().startswith("#") and ";" not in line
    }
    assert pinned, "engine/requirements.txt pins nothing"
    assert pinned <= wheels, f"missing wheels: {sorted(pinned - wheels)}"
    assert "quantmesh-engine" in wheels
