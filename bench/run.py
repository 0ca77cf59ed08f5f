"""`make bench`: run every bench/bench_*.py (or those named on the command line) and print one table."""

from __future__ import annotations

import importlib
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.common import Result  # noqa: E402


def discover(selected: list[str]) -> list[str]:
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if selected:
        unknown = [s for s in selected if s not in names]
        if unknown:
            raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(names)}")
        names = [n for n in names if n in selected]
    return names


def main(argv: list[str]) -> int:
    rows: list[Result] = []
    failures: list[str] = []
    for name in discover(argv):
        started = time.monotonic()
        print(f"# {name} ...", file=sys.stderr, flush=True)
        try:
            rows.extend(importlib.import_module(f"bench.{name}").run())
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failures.append(f"{name}: {exc!r}")
        print(f"# {name} took {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    width = max([len(r.name) for r in rows] + [4])
    print(f"{'name':<{width}}  {'figure':>12}  {'unit':<10}  target")
    for r in rows:
        print(f"{r.name:<{width}}  {r.figure:>12.3f}  {r.unit:<10}  {r.target}")
    for failure in failures:
        print(f"FAILED {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
