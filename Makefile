# Two commands matter: `make demo` runs the pipeline, `make test` runs the tests.
# Both create .venv, install pinned requirements, and start what they need themselves.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(CURDIR)/$(VENV)/bin

# Airflow's local configuration (this checkout's DAGs and plugins, a SQLite DB under data/)
# lives in mlpipeline/devtools/local_airflow.py, shared by the demo and the tests.
export PATH := $(BIN):$(PATH)

.PHONY: install lock requirements system-deps browser-deps stack-deps demo ui test test-fast bench lint clean

# uv.lock pins every package of every group (pyproject.toml); .venv gets them all, exactly.
# uv itself is in the `dev` group, so the sync keeps the uv it runs.
UV_VERSION := 0.13.9
$(VENV)/.installed: uv.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(VENV)/bin/uv || $(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv sync --quiet --frozen --python $(PY)
	$(VENV)/bin/mlpipeline data-docs-assets >/dev/null
	$(VENV)/bin/mlpipeline duckdb-extensions >/dev/null
	touch $@

# After editing dependencies in pyproject.toml: re-resolve uv.lock and export the pins the image
# installs (requirements-stack.txt: runtime + stack) and the runtime alone (requirements.txt).
lock: $(VENV)/.installed
	$(VENV)/bin/uv lock
	$(MAKE) requirements

requirements: uv.lock
	$(VENV)/bin/uv export --quiet --frozen --no-default-groups --no-hashes --no-emit-project \
	  --output-file requirements.txt
	$(VENV)/bin/uv export --quiet --frozen --no-default-groups --group stack --no-hashes \
	  --no-emit-project --output-file requirements-stack.txt

install: $(VENV)/.installed system-deps

# $(call apt-need,COMMAND,PACKAGE,HINT,ON_MISSING): when COMMAND is missing, install Debian's
# PACKAGE as root with apt-get; otherwise print how to get it, then run ON_MISSING.
define apt-need
if ! command -v $(1) >/dev/null; then \
  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
  else \
    echo "$(2) is missing: run 'sudo apt-get install -y $(2)' $(3)"; $(4) \
  fi; \
fi
endef

# redis-server is the one system package the local run needs (unless REDIS_URL is set).
system-deps:
	@if [ -z "$$REDIS_URL" ]; then $(call apt-need,redis-server,redis-server,(or set REDIS_URL),exit 1;); fi

# Chromium drives the browser test (tests/test_ui_browser.py), which skips without it unless
# CI=true.
browser-deps:
	@$(call apt-need,chromium,chromium,(the browser test skips without it),true;)

demo: install
	$(PY) -m mlpipeline.cli demo

# The Airflow UI (with scheduler, DAG processor, triggerer) and the MLflow UI until Ctrl-C.
AIRFLOW_PORT ?= 8080
MLFLOW_PORT ?= 5000
ui: install
	$(PY) -m mlpipeline.cli ui --airflow-port $(AIRFLOW_PORT) --mlflow-port $(MLFLOW_PORT)

# PostgreSQL's server binaries: the stack test (tests/test_stack.py) runs its own cluster with
# them, and skips without them unless CI=true.
stack-deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  $(call apt-need,initdb,postgresql,(the stack test skips without it),true;) \
	fi

# Two pytest workers (TEST_WORKERS=0: none, in pytest's own process), each given a whole module,
# slowest tiers first (tests/conftest.py orders them): run alone, the suite leaves about a third
# of two cores idle, waiting on servers and subprocesses.
TEST_WORKERS ?= 2
test: install browser-deps stack-deps
	$(PY) -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The unit tier alone: no server started, a few minutes (tiers: pyproject.toml's pytest markers).
test-fast: install
	$(PY) -m pytest -q -m unit

# Every benchmark, each against a baseline measured in the same run: benchmarks/results.json.
# One: `make bench ONLY=bench_scoring`. The stack nightly needs PostgreSQL's binaries (stack-deps).
bench: install stack-deps
	$(PY) -m benchmarks.harness $(ONLY)

# ruff, then the package layers (pyproject.toml's [tool.importlinter] contracts).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf data dbt_project/target dbt_project/logs
