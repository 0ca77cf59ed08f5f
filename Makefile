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

.PHONY: venv run test bench lint migrate clean

$(VENV)/.installed: requirements.txt requirements-dev.txt engine/requirements.txt engine/pyproject.toml cli/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -r engine/requirements.txt
	$(PY) -m pip install --quiet --no-deps -e engine
	$(PY) -m pip install --quiet --no-deps -e cli
	touch $@

venv: $(VENV)/.installed

migrate: venv
	mkdir -p var
	$(PY) manage.py migrate --noinput
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
	$(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var
