# Two entry points: `make demo` and `make test`. Both create the virtual
# environment on first use and reinstall only when pyproject.toml changes.
# `make docs` builds the documentation site into site/ the same way (with the
# docs extra, under its own stamp).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs
PYTEST_ARGS ?=
# pytest-xdist workers, one test file per worker at a time (--dist loadfile), so
# that fits shared within a file are computed once, handed out in the order of
# tests/conftest.py (slowest first; --no-loadscope-reorder keeps it).
# TEST_WORKERS=0 runs in this process. --durations lists the slowest tests at
# the end, so that every run shows where the suite's time goes.
TEST_WORKERS ?= 2

.PHONY: demo test examples lint install docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(DOCS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,docs]"
	touch $(DOCS_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dpgmm-ppl demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 $(PYTEST_ARGS)

# The example notebooks, run at their reduced size with their own assertions
# (tests/test_notebooks.py, deselected by make test); one notebook per worker.
examples: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist load --examples $(PYTEST_ARGS) tests/test_notebooks.py

# ruff's small rule set (pyproject.toml) on the code, mypy on the package.
lint: $(STAMP)
	$(BIN)/ruff check dpgmm_ppl tests benchmarks docs
	$(BIN)/mypy

# Static analysis of the sources only: nothing is imported or fitted, the
# figures are the committed files of docs/figures (docs/make_figures.py).
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) demo-output .pytest_cache
