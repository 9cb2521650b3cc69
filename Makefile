# The two commands of the README; each installs what it needs first (scripts/setup.sh).
PYTHON ?= python3
export PIP_ROOT_USER_ACTION := ignore

.PHONY: setup demo split-demo test test-slow test-all lint docs bench

setup:
	PYTHON=$(PYTHON) bash scripts/setup.sh

demo: setup
	$(PYTHON) train.py experiment=e4e_world

split-demo: setup
	$(PYTHON) -m hairclipv2.demo

# Two workers, one file each at a time (module fixtures are built once), one thread each: the suite
# is mostly small single-threaded steps, so two processes finish it in about two thirds of the time.
PYTEST := OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n 2 --dist loadfile --durations=15

test: setup
	$(PYTEST)

test-slow: setup
	$(PYTEST) -m slow

test-all: setup
	$(PYTEST) -m ""

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

docs:  # the documentation site (docs/, mkdocs.yml) into site/, every warning an error
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict --quiet --site-dir site

bench: setup
	$(PYTHON) benchmarks/generator.py
	$(PYTHON) benchmarks/encoder.py
	$(PYTHON) benchmarks/train_step.py
	$(PYTHON) benchmarks/editing.py
