# Quick start: `make book` (builds the book) and `make test`. Both create .venv from requirements.txt first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Results the book renders: default = the best committed study (results/gpu, else results/cpu); smoke = CI.
PROFILE ?= default
NOTEBOOKS := $(sort $(wildcard notebooks/*.py))

.PHONY: venv test lint book clean-book

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

# Each notebook: jupytext source -> papermill (executes it with PROFILE) -> book/*.ipynb, then Jupyter Book.
book: $(STAMP)
	@mkdir -p _build/notebooks
	@set -e; for nb in $(NOTEBOOKS); do \
		name=$$(basename $$nb .py); \
		echo "== $$name (PROFILE=$(PROFILE))"; \
		$(BIN)/jupytext --quiet --to ipynb --output _build/notebooks/$$name.ipynb $$nb; \
		$(BIN)/papermill --log-level WARNING -k python3 -p PROFILE $(PROFILE) \
			_build/notebooks/$$name.ipynb book/$$name.ipynb; \
	done
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "The book: _build/html/index.html"

clean-book:
	rm -rf _build book/*.ipynb
