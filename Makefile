# `make test` and `make bench` set everything up on a fresh machine (a local .venv) and run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint format bench docs clean

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

# The transport-layer tests run in processes of their own: twice in a full run an XLA CPU
# compile of theirs crashed its worker (segfault, not reproducible in isolation).
test: lint
	$(PY) -m pytest -n 2 -q tests/test_transport_layers.py
	$(PY) -m pytest -n 2 -q --ignore=tests/test_transport_layers.py

bench: $(STAMP)
	$(PY) -m benchmarks default

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) site results
