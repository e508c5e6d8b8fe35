# `make serve` and `make test` set up .venv themselves (Python 3.11+ and pip are all they need).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: serve test lint typecheck unit schema bench vendor clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/tally serve --demo

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

schema: $(STAMP)
	$(BIN)/tally export-schema

bench: $(STAMP)
	bash bench/run_all.sh

# Refreshes the page's npm libraries (pinned in tools/web-vendor/package.json) into tally/web/vendor/.
vendor:
	bash tools/vendor-web.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
