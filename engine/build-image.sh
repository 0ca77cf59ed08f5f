#!/usr/bin/env bash
# Build the engine image offline: wheels are built on the host (pip inside a container cannot
# verify TLS here) by deploy/build-wheels.sh, then `docker build` copies them in. Unchanged code
# rebuilds from the cache.
#   BASE_IMAGE (default quantmesh/base:bookworm)
#   TAGS (default "quantmesh/engine:<the engine's version> quantmesh/engine:latest"): tags to give
set -euo pipefail
export PATH="/usr/bin:$PATH"
cd "$(dirname "$0")/.."
BASE_IMAGE=${BASE_IMAGE:-quantmesh/base:bookworm}
PYTHON=${PYTHON:-.venv/bin/python}
VERSION=$("$PYTHON" -c "import tomllib;print(tomllib.load(open('engine/pyproject.toml','rb'))['project']['version'])")
TAGS=${TAGS:-quantmesh/engine:$VERSION quantmesh/engine:latest}

PYTHON="$PYTHON" bash deploy/build-wheels.sh engine >/dev/null
tag_args=()
for tag in $TAGS; do tag_args+=(-t "$tag"); done
docker build --network=host --quiet --build-arg "BASE_IMAGE=$BASE_IMAGE" -f engine/Dockerfile "${tag_args[@]}" . >/dev/null
echo "built $TAGS"
