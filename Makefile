# The README's commands. `make demo`, `make test` and `make bench` create .venv from setup.py first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= workdir/quick
DATA_DIR ?= data
CARD := $(DATA_DIR)/cisl_patches/phantom/1.0.0/dataset_card.json

.PHONY: venv test demo dataset bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'

venv: $(BIN)/python

# The phantom dataset is built once; `make clean` or deleting $(DATA_DIR) rebuilds it.
$(CARD): | venv
	$(BIN)/python launch/make_dataset.py --source=phantom --data_dir=$(DATA_DIR)

dataset: $(CARD)

# The paper's whole protocol in its quick config; a killed run continues where it stopped.
demo: $(CARD)
	$(BIN)/python launch/reproduce.py --config=configs/reproduce.py:quick \
	  --workdir=$(WORKDIR) --config.data_dir=$(DATA_DIR)

# Our steps beside the Keras and PyTorch peers (../shared/peers), one run, same machine.
# PyTorch goes into its own venv: it is never part of the project's install.
PEERS_VENV ?= .venv-peers
PEERS_DIR ?= ../shared/peers
$(PEERS_VENV)/bin/python:
	$(PY) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q torch==2.13.0

bench: venv $(PEERS_VENV)/bin/python
	$(BIN)/python bench/run.py --torch_python=$(PEERS_VENV)/bin/python --peers_dir=$(PEERS_DIR)

test: venv
	$(BIN)/python -m pytest -n 2 -q --durations=10 tests

clean:
	rm -rf $(VENV) $(PEERS_VENV) workdir $(DATA_DIR)
