# The two commands of the README; each installs what it needs first (scripts/setup.sh).
PYTHON ?= python3
export PIP_ROOT_USER_ACTION := ignore

.PHONY: setup demo split-demo test test-all bench

setup:
	PYTHON=$(PYTHON) bash scripts/setup.sh

demo: setup
	$(PYTHON) train.py experiment=e4e_demo

split-demo: setup
	$(PYTHON) -m hairclipv2.demo

test: setup
	$(PYTHON) -m pytest -q

test-all: setup
	$(PYTHON) -m pytest -q -m ""

bench: setup
	$(PYTHON) benchmarks/generator.py
	$(PYTHON) benchmarks/encoder.py
	$(PYTHON) benchmarks/train_step.py
	$(PYTHON) benchmarks/editing.py
