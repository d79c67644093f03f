# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SIZE ?= 25000

.PHONY: venv demo airflow test test-fast lint bench lock clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements.txt -r requirements-dev.txt
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

## make demo: one whole yearly distribution on synthetic data, through Airflow (var/demo/)
demo: $(STAMP)
	$(BIN)/python -m demo run --rows $(SIZE)

## make airflow: the Airflow UI on the demo's Airflow home (http://127.0.0.1:8080)
airflow: $(STAMP)
	$(BIN)/python -m demo airflow

## make test: lint, then every suite (unit, integration, end to end, slow ones included)
test: $(STAMP) lint
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

## make e2e-celery: the distribution through CeleryExecutor workers on PostgreSQL and Redis (127.0.0.1)
.PHONY: e2e-celery
e2e-celery: $(STAMP)
	$(BIN)/python -m pytest -rs tests/celery/test_celery_distribution.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## make bench: the run through Airflow vs. the floor, 25k and 1M rows (SIZE=small: smoke run); var/bench/
bench: $(STAMP)
	$(BIN)/python -m demo bench $(if $(filter small,$(SIZE)),--small,)

## make lock: re-resolve the pinned requirements from requirements*.in
lock: $(STAMP)
	$(BIN)/uv pip compile -q --python-version 3.11 requirements.in -o requirements.txt
	$(BIN)/uv pip compile -q --python-version 3.11 requirements-dev.in -o requirements-dev.txt

clean:
	rm -rf var/demo var/bench
