# `make test` and `make bench` set everything up on a fresh machine (a local .venv) and run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-long test-properties lint format bench bench-gpu docs clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned to the local CPU build: ogb and the PyG peer need it, and an
	# unpinned request would pull the CUDA wheels.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,bench,graphs,peers,docs]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Every test but the end-to-end runs of the benchmark suites and tasks, hypothesis at its
# `ci` profile. Tests marked with one xdist_group run on one worker (they share results).
test: lint
	$(PY) -m pytest -n 2 -q --dist loadgroup -m "not slow" --durations=15

# What CI runs after `make test`: the end-to-end runs (every suite and task in --quick mode,
# the GPU command on CPU, the documentation's minute-long examples).
test-long: $(STAMP)
	$(PY) -m pytest -n 2 -q --dist loadgroup -m slow --durations=15

# Every hypothesis property at the long profile (100+ drawn examples each).
test-properties: $(STAMP)
	$(PY) -m pytest -n 2 -q --dist loadgroup -m property --hypothesis-profile=long

bench: $(STAMP)
	$(PY) -m benchmarks default

# On a machine with a GPU (jax[cuda] installed): every figure that needs one, within 8 minutes.
bench-gpu: $(STAMP)
	$(PY) -m benchmarks gpu

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) site results .xla-cache
