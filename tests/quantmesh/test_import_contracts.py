"""The layer rules (pyproject.toml, [tool.importlinter]) hold: `lint-imports` passes; and an import inside
a function says why it cannot sit at the module's top."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Everything but the tests: the portal's apps, the engine, the CLI and the benchmarks.
CODE = [
    "accounts",
    "alerts",
    "backups",
    "billing",
    "instances",
    "quantmesh",
    "strategies",
    "engine/quantmesh_engine",
    "cli/quantmesh_cli",
    "bench",
]


def test_import_contracts_are_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _inline_import_runs(tree: ast.AST):
    """Each run of consecutive import statements inside a function (at any depth of its body)."""
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            for field in ("body", "orelse", "finalbody"):
                statements = getattr(node, field, None)
                if not isinstance(statements, list):
                    continue
                run = []
                for statement in [*statements, None]:
                    if isinstance(statement, ast.Import | ast.ImportFrom):
                        run.append(statement)
                    elif run:
                        yield run
                        run = []


def unexplained_inline_imports(root: Path = ROOT) -> list[str]:
    """`path:line` of every run of inline imports without a comment on the line above or on its lines."""
    found = set()
    for folder in CODE:
        for path in sorted((root / folder).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            source = path.read_text()
            lines = source.splitlines()
            for run in _inline_import_runs(ast.parse(source)):
                first, last = run[0].lineno, run[-1].end_lineno
                above = lines[first - 2].strip()
                if not above.startswith("#") and not any("#" in line for line in lines[first - 1 : last]):
                    found.add(f"{path.relative_to(root)}:{first}")
    return sorted(found)


def test_inline_imports_give_their_reason():
    # Imports sit at the module's top; one inside a function (a real cycle, models not loaded yet, a
    # large optional library) carries a one-line comment saying which.
    assert unexplained_inline_imports() == []


def test_an_unexplained_inline_import_is_found(tmp_path):
    package = tmp_path / "accounts"
    package.mkdir()
    (package / "late.py").write_text(
        "def explained():\n    from .models import User  # cycle: models import this module\n\n\n"
        "def unexplained():\n    if True:\n        import json\n\n        return json\n"
    )
    assert unexplained_inline_imports(tmp_path) == ["accounts/late.py:7"]
