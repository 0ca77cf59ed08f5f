"""The README names only files and folders that exist (its Layout table above all), so it cannot drift from
the tree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATH = re.compile(r"`([\w./-]+(?:\.py|/))`")


def missing_paths(readme: str, root: Path = ROOT) -> list[str]:
    """Paths in backquotes that do not exist. A path with a folder in it is read from the repository's
    root (URLs, starting with /, are not paths). In the Layout table a path is read from the row's
    folder, from the root, or from a folder named before it in the same cell (`runtime/` … `docker.py`)."""
    before, layout = readme.split("\n## Layout\n", 1)
    layout, after = (layout.split("\n## ", 1) + [""])[:2]
    missing = []
    for line in layout.splitlines():
        if not line.startswith("| `"):
            continue
        folders, what = line.split("|")[1:3]
        bases = [root]
        for folder in PATH.findall(folders):
            bases.append(root / folder)
            if not (root / folder).is_dir():
                missing.append(folder)
        for path in PATH.findall(what):
            found = next((base / path for base in reversed(bases) if (base / path).exists()), None)
            if found is None:
                missing.append(path)
            elif path.endswith("/"):
                bases.append(found)
    prose = [line for line in f"{before}\n{layout}\n{after}".splitlines() if not line.startswith("| `")]
    for line in prose:
        missing += [
            path
            for path in PATH.findall(line)
            if "/" in path.rstrip("/") and not path.startswith("/") and not (root / path).exists()
        ]
    return missing


def test_the_readme_names_what_exists():
    assert missing_paths((ROOT / "README.md").read_text()) == []


def test_a_path_that_went_away_is_named():
    readme = (
        "# Project\n\nScaling: `instances/autoscaling.py`.\n\n## Layout\n\n| folder | what |\n|---|---|\n"
        "| `quantmesh/` | `errors.py`, `api/` (`errors.py`, `gone.py`) |\n\nSee `quantmesh/api/old.py`.\n"
    )
    assert missing_paths(readme) == ["gone.py", "instances/autoscaling.py", "quantmesh/api/old.py"]
