#!/usr/bin/env bash
# The wheelhouses the images install from, built on the host so that `docker build` needs no network
# (pip inside a container may be unable to reach or verify PyPI):
#   wheels/portal  exactly the wheels requirements.txt pins, and the engine's wheel (deploy/Dockerfile)
#   wheels/engine  the engine's pinned dependencies and its wheel (engine/Dockerfile)
# Downloads go to a cache once; later runs build from the cache alone. SOURCE_DATE_EPOCH makes the engine's own wheel byte-identical for
# unchanged code, so Docker's layer cache holds and an unchanged rebuild takes seconds.
#   usage: deploy/build-wheels.sh [portal] [engine]   (default: both)
#   PYTHON: a Python of the images' version, 3.11 (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3)}
CACHE=${QM_WHEEL_CACHE:-$HOME/.cache/quantmesh/wheels}
export SOURCE_DATE_EPOCH=315532800
mkdir -p "$CACHE"

pip_quiet() { "$PYTHON" -m pip "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
wheelhouse() {  # wheelhouse <dir> <requirements file>: the pinned wheels only, nothing stale
  # Requirements behind an environment marker the host's Python skips may apply to the image's
  # Python (Debian bookworm's is 3.11.2): their wheels go in anyway.
  local marked; marked=$(grep -E '^[A-Za-z0-9_.-]+==[^ ;]+ *;' "$2" | cut -d';' -f1 | tr -d ' ' || true)
  rm -rf "$1"
  # From the cache alone when it holds everything (seconds); otherwise fetch what is missing first.
  if ! offline "$1" "$2" "$marked" 2>/dev/null; then
    pip_quiet wheel --quiet --wheel-dir "$CACHE" -r "$2"
    [ -z "$marked" ] || pip_quiet wheel --quiet --no-deps --wheel-dir "$CACHE" $marked
    rm -rf "$1"
    offline "$1" "$2" "$marked"
  fi
}
# Fails when the cache lacks a wheel. Called as an `if` condition, where `set -e` is off: each step's
# status must be chained explicitly, or a fresh machine's empty cache would pass for a full one.
offline() {
  pip_quiet wheel --quiet --no-index --find-links "$CACHE" --wheel-dir "$1" -r "$2" \
    && { [ -z "$3" ] || pip_quiet wheel --quiet --no-deps --no-index --find-links "$CACHE" --wheel-dir "$1" $3; }
}
for image in "${@:-portal engine}"; do
  for image in $image; do
    case $image in
      portal)
        wheelhouse wheels/portal requirements.txt
        # The strategy advisor runs the engine's backtester in the portal's worker (strategies/services.py):
        # the engine's own wheel, without its exchange dependencies (the portal reads candles from engines).
        pip_quiet wheel --quiet --no-deps --wheel-dir wheels/portal ./engine
        rm -rf engine/build ;;
      engine)
        wheelhouse wheels/engine engine/requirements.txt
        pip_quiet wheel --quiet --no-deps --wheel-dir wheels/engine ./engine
        rm -rf engine/build ;;
      *) echo "unknown image $image (portal, engine)" >&2; exit 2 ;;
    esac
    echo "wheels/$image: $(ls "wheels/$image" | wc -l) wheels"
  done
done
