# `make run` and `make test` set everything up from nothing: a virtual environment with cxrun
# and its development tools installed from the package registry.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup browser run test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Publishes the example spinners and runs them (a job with failed rows exits 3: that is the
# demo), then shows the jobs table.
run: setup
	$(BIN)/cxrun publish
	$(BIN)/cxrun run-now welcome || [ $$? -eq 3 ]
	$(BIN)/cxrun run-now lead-triage || [ $$? -eq 3 ]
	$(BIN)/cxrun run-now ai-welcome || [ $$? -eq 3 ]
	$(BIN)/cxrun jobs --limit 10

# Three test processes: most tests wait on subprocesses and servers, so on 2 cores three at a
# time take about two thirds of the time one does. `make test PYTEST_WORKERS=0` runs them in one.
PYTEST_WORKERS ?= 3

# The console's browser test drives Debian's Chromium with its chromedriver: installed here when
# missing and we are root (as CI is); otherwise that test is skipped (and fails under CI).
CHROMIUM_PACKAGES := chromium chromium-driver
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(CHROMIUM_PACKAGES)

browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		$(APT_INSTALL) || { apt-get update -q && $(APT_INSTALL); }; \
	else \
		echo "no /usr/bin/chromium or /usr/bin/chromedriver (and not root): the browser tests will be skipped"; \
	fi

test: setup browser
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS)

lint: setup
	$(BIN)/ruff check cxrun tests bench
	$(BIN)/ruff format --check cxrun tests bench
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy cxrun

bench: setup
	$(BIN)/python bench/pure.py
	$(BIN)/python bench/io.py
	$(BIN)/python bench/crash.py
	$(BIN)/python bench/chaos.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/console.py
	$(BIN)/python bench/limits.py
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) .cxrun .pytest_cache .mypy_cache .ruff_cache
