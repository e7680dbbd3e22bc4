# Quick start: `make run` serves the API on :5000; `make test` runs the linters and the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint format migrate bench screenshots clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.run-deps: requirements.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.run-deps

# Development values; anything set in the environment wins.
run: export DEBUG ?= 1
run: export X_API_BASE_URL ?= http://127.0.0.1:5001
run: export X_CONSUMER_KEY ?= dev-consumer-key
run: export X_CONSUMER_SECRET ?= dev-consumer-secret
run: export X_BEARER_TOKEN ?= dev-bearer-token
run: $(VENV)/.run-deps
	$(PY) manage.py migrate --noinput
	$(PY) manage.py createcachetable
	$(PY) manage.py ensure_demo
	$(PY) -m mktx.devstack

migrate: export DEBUG ?= 1
migrate: $(VENV)/.run-deps
	$(PY) manage.py migrate --noinput
	$(PY) manage.py createcachetable

# The admin's analytics page as PNG files in var/screenshots/ (headless Chromium, installed with apt when missing);
# the data is make run's database (var/mktx.sqlite3 unless DATABASE_URL says otherwise).
screenshots: export DEBUG ?= 1
screenshots: $(VENV)/.run-deps
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_demo
	$(PY) manage.py analytics_screenshots

lint: $(VENV)/.dev-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DEBUG=1 $(VENV)/bin/mypy .

format: $(VENV)/.dev-deps
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# the suite runs on every core (pytest-xdist), at most four workers: each gets its own database and Redis database
TEST_WORKERS ?= auto
test: lint
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --maxprocesses=4 $(PYTEST_ARGS)

clean:
	rm -rf var/ .mypy_cache .ruff_cache
