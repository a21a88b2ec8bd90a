# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test system-deps venv lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# the exporter alone (what the demo needs) ...
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

# ... and with what the tests need (pyodbc, hypothesis, the schema validators)
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/batch-exporter demo $(DEMO_ARGS)

system-deps:
	bash scripts/install-system-deps.sh

# ruff on the repository, mypy on the package ([tool.mypy] in pyproject.toml); make test runs both too,
# through tests/test_static_checks.py
lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/mypy

test: system-deps $(VENV)/.installed-test
	$(BIN)/python -m pytest

bench: system-deps $(VENV)/.installed-test
	bash bench/run_all.sh
