# Two commands on a fresh machine (Python >= 3.11 and make):
#   make run   - set up, generate demo data if missing, materialize every asset
#   make test  - set up, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: setup run test dev lint bench lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

run: setup
	$(BIN)/ottp demo

test: setup
	$(BIN)/python -m pytest

dev: setup
	$(BIN)/ottp ui

lint: setup
	$(BIN)/ruff check ottp ml orchestration tests benchmarks

bench: setup
	$(BIN)/python benchmarks/bench_load.py

# Regenerate the lock after changing dependencies in pyproject.toml.
lock: setup
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) data dbt_project/target dbt_project/logs
