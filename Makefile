# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test system-deps venv lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/batch-exporter demo $(DEMO_ARGS)

system-deps:
	bash scripts/install-system-deps.sh

test: system-deps venv
	$(BIN)/python -m pytest

bench: system-deps venv
	bash bench/run_all.sh
