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

.PHONY: env lint test test-lib test-notebooks test-notebooks-emulated test-browser fuzz-deep book notebooks bench pdf lab clean


$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

env: $(STAMP)

# Another CPU, emulated (CONTRIBUTING.md, scripts/emulated_cpu.py): other torch, OpenBLAS, NumPy
# and TensorFlow kernels. Exact cells must still match and every claim must still hold.
EMULATED_CPU := $(shell $(PYTHON) scripts/emulated_cpu.py)
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval-sanitize.cfg

# Library tests, doctests and every notebook (nbval: exact cells compared, claims checked),
# then the notebooks once more on the emulated CPU.
test: env lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder -q \
	  --doctest-modules xentlib tests $(NBVAL) book
	$(EMULATED_CPU) $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q $(NBVAL) book

# The linter: configuration in pyproject.toml ([tool.ruff]).
lint: env
	$(VENV)/bin/ruff check xentlib tests bench scripts book/_ext

test-lib: env
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q --doctest-modules xentlib tests \
	  --ignore=tests/test_browser.py

test-notebooks: env
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q $(NBVAL) book

test-notebooks-emulated: env
	$(EMULATED_CPU) $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q $(NBVAL) book

# The property tests at full scale: 10,000 derandomised examples per property (the ci profile
# with FUZZ_CI_EXAMPLES=10000; tests/fuzzing.py). About 80 minutes on two cores.
fuzz-deep: env
	FUZZ_CI_EXAMPLES=10000 CI=true $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q \
	  -p no:cacheprovider tests/test_fuzz*.py

# The built book in headless Chromium, offline (part of `make test`; screenshots in test-artifacts/).
test-browser: env
	$(PY) -m pytest -q tests/test_browser.py

# HTML book, every notebook executed, warnings are errors.
book: env
	$(VENV)/bin/jupyter-book build . --warningiserror --nitpick --keep-going
	@echo "Open _build/html/index.html"

# Re-execute notebooks in place to refresh their stored outputs (NB=path for one).
NB ?= $(shell find book -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' -not -path '*/_build/*' | sort)
notebooks: env
	for nb in $(NB); do (cd "$$(dirname $$nb)" && $(abspath $(VENV))/bin/jupyter execute --inplace \
	  --timeout=600 "$$(basename $$nb)") && $(PY) scripts/tidy_outputs.py "$$nb" || exit 1; done

clean:
	rm -rf _build .pytest_cache

# Benchmarks (issue 5): ratios against the frameworks' built-ins, written to bench/results/.
bench: env
	$(PY) bench/run.py

# JupyterLab (pinned in requirements.txt) on the book's notebooks, with the .venv kernel.
lab: env
	$(VENV)/bin/jupyter lab --notebook-dir=book

# PDF of the book (xelatex), built from the notebooks' stored outputs into _build/latex/book.pdf.
# Installs the Debian TeX packages it needs (apt-get, as root; ~240 MB download, 630 MB on disk) when missing.
PDF_TEX_PACKAGES := latexmk texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended \
  tex-gyre texlive-xetex fonts-freefont-otf texlive-lang-chinese fonts-noto-cjk
pdf: env
	@if ! command -v xelatex >/dev/null || ! command -v latexmk >/dev/null \
	    || ! kpsewhich xeCJK.sty >/dev/null || ! fc-list | grep -q "Noto Serif CJK"; then \
	  echo "make pdf: installing $(PDF_TEX_PACKAGES)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y --no-install-recommends $(PDF_TEX_PACKAGES) \
	  || { apt-get update && apt-get install -y --no-install-recommends $(PDF_TEX_PACKAGES); }; \
	fi
	$(PY) book/_ext/stored_outputs_config.py _build/pdf/_config.yml
	$(VENV)/bin/jupyter-book build . --builder pdflatex --config _build/pdf/_config.yml
	@echo "PDF: _build/latex/book.pdf"
