# `make book` builds the HTML book, `make test` runs every test. Both first create or
# refresh the pinned virtual environment in .venv (nothing else needs installing).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2
export PYTHONHASHSEED := 0
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: env test test-lib test-notebooks book notebooks bench pdf clean


$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

env: $(STAMP)

# Library tests, doctests and every notebook (nbval compares the stored outputs), in one run.
test: env
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q \
	  --doctest-modules xentlib tests \
	  --nbval --nbval-current-env --nbval-sanitize-with tests/nbval-sanitize.cfg book

test-lib: env
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q --doctest-modules xentlib tests

test-notebooks: env
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q \
	  --nbval --nbval-current-env --nbval-sanitize-with tests/nbval-sanitize.cfg book

# HTML book, every notebook executed, warnings are errors.
book: env
	$(VENV)/bin/jupyter-book build . --warningiserror --nitpick --keep-going
	@echo "Open _build/html/index.html"

# Re-execute notebooks in place to refresh their stored outputs (NB=path for one).
NB ?= $(shell find book -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' -not -path '*/_build/*' | sort)
notebooks: env
	for nb in $(NB); do (cd "$$(dirname $$nb)" && $(abspath $(VENV))/bin/jupyter execute --inplace \
	  --timeout=600 "$$(basename $$nb)") || exit 1; done

clean:
	rm -rf _build .pytest_cache

# Benchmarks (issue 5): ratios against the frameworks' built-ins, written to bench/results/.
bench: env
	$(PY) bench/run.py

# PDF of the book (installs the Debian TeX packages it needs).
pdf: env
	@echo "make pdf: not yet implemented" && exit 1
