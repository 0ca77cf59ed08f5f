#!/usr/bin/env bash
# Build the engine image offline: wheels are built on the host (pip inside a container cannot
# verify TLS here), then `docker build` copies them in. Unchanged code rebuilds from the cache.
#   BASE_IMAGE (default quantmesh/base:bookworm)  TAG (default: the engine's version)
#   EXTRA_TAG (default latest; empty: none), e.g. TAG=mybranch EXTRA_TAG= for a private test image
set -euo pipefail
export PATH="/usr/bin:$PATH"
cd "$(dirname "$0")"
BASE_IMAGE=${BASE_IMAGE:-quantmesh/base:bookworm}
PYTHON=${PYTHON:-../.venv/bin/python}
VERSION=$("$PYTHON" -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
TAG=${TAG:-$VERSION}
EXTRA_TAG=${EXTRA_TAG-latest}
CONTEXT=../var/engine-image
CACHE=/var/cache/quantmesh/wheels
mkdir -p "$CONTEXT" "$CACHE"

# Dependencies' wheels are cached by requirements; the engine's own wheel is rebuilt every time.
"$PYTHON" -m pip wheel --quiet --wheel-dir "$CACHE" -r requirements.txt
rm -rf "$CONTEXT/wheels"
mkdir -p "$CONTEXT/wheels"
cp "$CACHE"/*.whl "$CONTEXT/wheels/"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$CONTEXT/wheels" .
cp Dockerfile "$CONTEXT/Dockerfile"

docker build --network=host --quiet --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  -t "quantmesh/engine:$TAG" ${EXTRA_TAG:+-t "quantmesh/engine:$EXTRA_TAG"} "$CONTEXT" >/dev/null
echo "quantmesh/engine:$TAG built"
