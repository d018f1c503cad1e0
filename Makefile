# Two commands on a fresh machine (Python >= 3.11 and make):
#   make run   - set up, generate demo data if missing, materialize every asset
#   make test  - set up, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: setup browser sdks run test dev lint bench lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# Debian's Chromium and ChromeDriver for the UI test (browsers downloaded by
# test tools cannot be fetched on every machine).
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "The UI test needs Debian's chromium and chromium-driver: sudo apt-get install chromium chromium-driver"; fi

# The tracking SDKs' Node packages the collector tests send a session with, from npm's
# lock file (tests/realtime/segment_node/); without node, npm or the registry those tests skip.
SDK_DIR := tests/realtime/segment_node
sdks:
	@if ! command -v npm >/dev/null 2>&1; then echo "The Node SDK tests need node and npm (they skip without them)"; \
	elif [ ! -d $(SDK_DIR)/node_modules ]; then npm ci --prefix $(SDK_DIR) --no-audit --no-fund --silent \
		|| { rm -rf $(SDK_DIR)/node_modules; echo "npm ci failed: the Node SDK tests will skip"; }; fi

run: setup
	$(BIN)/ottp demo

test: setup browser sdks
	$(BIN)/python -m pytest

dev: setup
	$(BIN)/ottp ui

# Python format and lint, then the dbt models' SQL (dbt_project/.sqlfluff).
PY_DIRS := ottp ml orchestration tests benchmarks
lint: setup
	$(BIN)/ruff format --check $(PY_DIRS)
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/sqlfluff lint --processes 2 dbt_project

# benchmarks/suite.py covers generate, load, dbt, recommender, gates and sync on
# simulated data; the scripts after it push the recommender, the gates and the sync
# to larger synthetic sizes than 10M events produce; the last three measure the
# real-time service (intake rate, event-to-profile latency, memory per viewer,
# recommendation latency under intake load).
bench: setup
	$(BIN)/python benchmarks/suite.py --json bench-results/ottp-bench.json
	$(BIN)/python benchmarks/bench_ml.py
	$(BIN)/python benchmarks/bench_quality.py
	$(BIN)/python benchmarks/bench_sync.py
	$(BIN)/python benchmarks/bench_collector.py --clients 8 --seconds 10 --runs 3
	$(BIN)/python benchmarks/bench_realtime.py --bundle-users 200000
	$(BIN)/python benchmarks/bench_recommend.py --users 100000 --titles 20000 --rates 100,500

# Regenerate the lock after changing dependencies in pyproject.toml.
lock: setup
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) data dbt_project/target dbt_project/logs
