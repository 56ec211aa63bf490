# The README's commands. `make test` and `make demo` create .venv from setup.py first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= workdir/quick
DATA_DIR ?= data

.PHONY: venv test demo bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'

venv: $(BIN)/python

test: venv
	$(BIN)/python -m pytest -n 2 -q tests

clean:
	rm -rf $(VENV) workdir data
