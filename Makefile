# QuantMesh Cloud. `make run` sets everything up and serves the portal on http://127.0.0.1:8000;
# `make test` runs the whole test suite. Both work on a fresh machine with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# Links the portal prints (instance URLs, Stripe's return address) follow HOST and PORT unless set.
QM_INSTANCE_URL_TEMPLATE ?= http://instance-{slug}.{domain}:$(PORT)
QM_PUBLIC_URL ?= http://$(HOST):$(PORT)

.PHONY: venv run test bench lint migrate clean deploy upgrade backup instances-network

$(VENV)/.installed: requirements.txt requirements-dev.txt engine/requirements.txt engine/pyproject.toml cli/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -r engine/requirements.txt
	$(PY) -m pip install --quiet --no-deps -e engine
	$(PY) -m pip install --quiet --no-deps -e cli
	touch $@

venv: $(VENV)/.installed

# A database that does not exist yet starts as a copy of the migrated template (quantmesh/dbtemplate.py:
# two minutes of migrations once per machine and set of migration files, not once per clone).
migrate: venv
	mkdir -p var
	$(PY) manage.py migrate_from_template
	$(PY) manage.py load_plans

run: migrate
	$(PY) manage.py create_demo_user
	QM_INSTANCE_URL_TEMPLATE='$(QM_INSTANCE_URL_TEMPLATE)' QM_PUBLIC_URL='$(QM_PUBLIC_URL)' \
	$(PY) manage.py run_portal --host $(HOST) --port $(PORT)

test: venv
	$(VENV)/bin/pytest

bench: migrate
	$(PY) bench/run.py

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var

# --- Production (README, "Production stack"): Docker Compose v2, or Debian's docker-compose 1.29.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
QM_DOCKER_NETWORK ?= quantmesh-instances
QM_INSTANCES_SUBNET ?= 198.18.1.0/24

# Customer instances' network: outside Compose, so instances outlive `down` and upgrades.
instances-network:
	docker network inspect $(QM_DOCKER_NETWORK) >/dev/null 2>&1 \
	  || docker network create --subnet $(QM_INSTANCES_SUBNET) $(QM_DOCKER_NETWORK)

# First start on a server: wheelhouses, images, the instances network, then the whole stack.
deploy: instances-network run-keys-dir
	@test -f .env || { echo "Copy deploy/.env.example to .env and fill it in first."; exit 1; }
	@test -s deploy/secrets/metrics-token || { echo "Put QM_METRICS_TOKEN in deploy/secrets/metrics-token first."; exit 1; }
	bash deploy/build-wheels.sh
	$(COMPOSE) build
	$(COMPOSE) up -d

# Engines' run keys live on the host's tmpfs, written by the worker (uid 10000); gone after a reboot.
run-keys-dir:
	install -d -m 0700 -o 10000 -g 10000 /dev/shm/quantmesh-keys

# The platform database, dumped now to the backups volume (platform/), beside the scheduled dumps.
backup:
	$(COMPOSE) exec -T pg-backup sh /usr/local/bin/pg-backup.sh once

# A new version: back up, build, migrate, then recreate the platform's containers. Customer instances
# are containers of their own (not Compose's) on the external network: they keep running throughout.
upgrade: backup instances-network run-keys-dir
	bash deploy/build-wheels.sh
	$(COMPOSE) build
	$(COMPOSE) run --rm migrate
	$(COMPOSE) up -d --remove-orphans
