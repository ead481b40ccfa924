# Two commands matter: `make demo` runs the pipeline, `make test` runs the tests.
# Both create .venv, install pinned requirements, and start what they need themselves.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(CURDIR)/$(VENV)/bin

# Airflow's local configuration (this checkout's DAGs and plugins, a SQLite DB under data/)
# lives in mlpipeline/local_airflow.py, shared by the demo and the tests.
export PATH := $(BIN):$(PATH)

.PHONY: install system-deps browser-deps demo test bench lint clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements.txt
	$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	touch $@

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

test: install browser-deps
	$(PY) -m pytest -q

# Every benchmark, each against a baseline measured in the same run: benchmarks/results.json.
bench: install
	$(PY) -m benchmarks.harness

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf data dbt_project/target dbt_project/logs
