# salescoach — a fresh machine needs only python3 (3.11+): `make chat`, `make test`.
# The virtualenv is created and the package installed on first use, and again whenever
# pyproject.toml changes (the stamp file below depends on it).

PYTHON ?= python3
VENV   ?= .venv
ARGS   ?=

BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv chat test lint bench clean distclean

help: ## Show this help
	@echo "Usage: make <target> [ARGS='...']"
	@echo
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'
	@echo
	@echo "Examples: make chat ARGS='--user lilei --lang zh'   make test ARGS='-k web -x'"
	@echo "PostgreSQL tests run when SALESCOACH_TEST_DATABASE_URL is set."

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
	  echo "error: '$(PYTHON)' not found; install Python 3.11+ or run make PYTHON=/path/to/python3.11" >&2; \
	  exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "error: salescoach needs Python 3.11+, but $(PYTHON) is $$($(PYTHON) -V 2>&1);" \
	       "run make PYTHON=python3.11 (or newer)" >&2; \
	  exit 1; }
	@echo "Creating $(VENV) with $$($(PYTHON) -V 2>&1)"
	@$(PYTHON) -m venv $(VENV) || { \
	  rm -rf $(VENV); \
	  echo "error: '$(PYTHON) -m venv' failed; on Debian/Ubuntu install the python3-venv package" >&2; \
	  exit 1; }

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "Installing salescoach and its dev tools into $(VENV)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

venv: $(STAMP) ## Create .venv and install the package with dev tools (only when needed)

chat: $(STAMP) ## Talk to the coach in the terminal (SQLite by default); ARGS go to `salescoach chat`
	$(BIN)/salescoach chat $(ARGS)

test: $(STAMP) ## Run the whole test suite; ARGS go to pytest
	$(BIN)/pytest $(ARGS)

lint: $(STAMP) ## ruff and mypy (both run; fails if either finds something)
	@status=0; \
	echo "$(BIN)/ruff check ."; $(BIN)/ruff check . || status=1; \
	echo "$(BIN)/mypy"; $(BIN)/mypy || status=1; \
	exit $$status

bench: $(STAMP) ## Run the benchmarks in benchmarks/ (they print figures; not pass/fail)
	@set -e; found=; for f in benchmarks/*.py; do \
	  [ -f "$$f" ] || continue; found=1; \
	  echo "== $$f"; $(BIN)/python "$$f" $(ARGS); \
	done; [ -n "$$found" ] || echo "no benchmarks in benchmarks/"

clean: ## Remove caches and build output (keeps .venv and your database)
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## clean, and remove .venv as well
	rm -rf $(VENV)
