# Quick start: `make book` (builds the book) and `make test`. Both create .venv from requirements.txt first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/*.py))

# What the book renders. default: the committed results of the best real study (results/study, then results/gpu,
# the first whose table holds every run of its profile, else results/cpu: a partial study is not rendered),
# running only what is missing; smoke: a minutes-long study end to end (CI); gpu: the whole study re-executed on
# a GPU machine.
PROFILE ?= default
BOOTSTRAP := 1000
ifeq ($(PROFILE),default)
COMPLETE = $(shell PYTHONPATH=src $(PYTHON) -m replicate status results/$(1) >/dev/null 2>&1 && echo $(1))
STUDY := $(or $(call COMPLETE,study),$(call COMPLETE,gpu),cpu)
IMAGE := image
THEORY := results/theory
else ifeq ($(PROFILE),smoke)
BOOTSTRAP := 200
STUDY := smoke
IMAGE := smoke_image
THEORY := results/smoke/theory
else
STUDY := $(PROFILE)
IMAGE := image
THEORY := results/theory
endif

# where _build/html goes
BOOK_OUT ?= .
MATHJAX := book/_static/mathjax/tex-mml-chtml.js

.PHONY: venv test browser-test lint book results sweeps clean-book readme device
.DELETE_ON_ERROR:

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

# Builds the smoke book and drives headless Chromium (Debian's package) over every page.
browser-test: $(STAMP)
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(PY) -m pytest -m browser

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Sweeps resume (a finished one costs a second); a fit is redone only when its table changed.
sweeps: $(STAMP)
	$(PY) -m replicate sweep --profile $(STUDY) --out results/$(STUDY)
	$(PY) -m replicate sweep --profile $(IMAGE) --out results/$(IMAGE)

results/%/fit.json: results/%/runs.csv
	$(PY) -m replicate fit $< --bootstrap $(BOOTSTRAP) --out $@ --if-changed

# the same runs scored by their EMA weights: the evaluation protocol's effect on the laws
results/%/fit_ema.json: results/%/runs.csv
	$(PY) -m replicate fit $< --bootstrap $(BOOTSTRAP) --loss-column val_loss_ema --out $@ --if-changed

# the learning-rate law at a fixed batch size (Eq. 13's test at this scale): lr* ~ T^e_T N^e_N, the lr-B ridge
results/%/lr_law.json: results/%/runs.csv
	$(PY) -m replicate lrlaw $< --bootstrap $(BOOTSTRAP) --out $@ --if-changed

# Stage A (the study issue): its sweep runs by hand (hours on the CPU); its summary follows its table (each seed
# resample refits the surface for both readouts, about 0.2 s on one core). Its results and Stage L's are committed
# with STAGE_BOOTSTRAP resamples whatever the book's profile, so that a smoke build never rewrites them.
STAGE_BOOTSTRAP := 1000
STAGE_A := $(if $(wildcard results/stage_a/runs.csv),results/stage_a/summary.json results/stage_a/lr_law.json)
results/stage_a/summary.json: results/stage_a/runs.csv
	$(PY) -m replicate curvature $< --bootstrap $(STAGE_BOOTSTRAP) --out $@ --if-changed

results/stage_a/lr_law.json: results/stage_a/runs.csv
	$(PY) -m replicate lrlaw $< --bootstrap $(STAGE_BOOTSTRAP) --out $@ --if-changed

# Stage L (the learning-rate law's issue): its sweep runs by hand; its law and held-out checks follow its table
# once the table holds every run of its profile (a partial Stage L is not fitted)
STAGE_L := $(shell PYTHONPATH=src $(PYTHON) -m replicate status results/stage_l >/dev/null 2>&1 && echo results/stage_l/summary.json results/stage_l/lr_law_ema.json)
results/stage_l/summary.json: results/stage_l/runs.csv
	$(PY) -m replicate lrlaw $< --bootstrap $(STAGE_BOOTSTRAP) --out results/stage_l/lr_law.json --summary $@ --if-changed

# the same law and held-out checks with the runs scored by their EMA weights: whether a verdict depends on the
# readout (summary_ema.json is written with it)
results/stage_l/lr_law_ema.json: results/stage_l/runs.csv
	$(PY) -m replicate lrlaw $< --bootstrap $(STAGE_BOOTSTRAP) --loss-column val_loss_ema --out $@ \
		--summary results/stage_l/summary_ema.json --if-changed

# Claim 4 at language-model scale: Porian et al.'s public IsoFLOP points (data/public/porian, committed with their
# licence and source commit), every configuration through `fit`; redone only when a table changed, whatever the
# profile (the data are not the study's: a smoke build keeps the committed claim)
results/public/porian.json: $(wildcard data/public/porian/*.csv) | $(STAMP)
	@mkdir -p results/public
	$(PY) -m replicate porian data/public/porian --bootstrap 1000 --out $@ --if-changed

$(THEORY)/line_search.json: | $(STAMP)
	$(PY) -m replicate theory --out $(THEORY) $(if $(filter smoke,$(PROFILE)),--quick)

results: sweeps
	$(MAKE) --no-print-directory results/$(STUDY)/fit.json results/$(STUDY)/fit_ema.json results/$(STUDY)/lr_law.json \
		results/$(IMAGE)/fit.json \
		$(THEORY)/line_search.json $(STAGE_A) $(STAGE_L) results/public/porian.json

# A local MathJax, so that the book reads offline (npm registry; the package's combined script and its fonts).
$(MATHJAX):
	@rm -rf _build/mathjax && mkdir -p _build/mathjax book/_static/mathjax/output/chtml
	cd _build/mathjax && npm pack mathjax@3.2.2 --silent >/dev/null && tar xzf mathjax-3.2.2.tgz
	cp -r _build/mathjax/package/es5/output/chtml/fonts book/_static/mathjax/output/chtml/
	cp _build/mathjax/package/es5/tex-mml-chtml.js $@

# Each notebook: jupytext source -> papermill (executes it with the results above, recording the results files it
# opens in _build/reads/) -> book/*.ipynb beside the book's own pages; then the execution page from those records,
# and Jupyter Book renders the site (the notebooks are not executed again).
book: results $(MATHJAX)
	@rm -rf _build/reads book/data && mkdir -p _build/notebooks _build/reads
	@set -e; for nb in $(NOTEBOOKS); do \
		name=$$(basename $$nb .py); \
		echo "== $$name (PROFILE=$(PROFILE): results/$(STUDY), results/$(IMAGE), $(THEORY))"; \
		$(BIN)/jupytext --quiet --to ipynb --output _build/notebooks/$$name.ipynb $$nb; \
		REPLICATE_READS_LOG=_build/reads/$$name.txt \
		$(BIN)/papermill --log-level WARNING -k python3 --cwd . -p PROFILE $(PROFILE) -p RESULTS_DIR results/$(STUDY) \
			-p IMAGE_DIR results/$(IMAGE) -p THEORY_DIR $(THEORY) \
			_build/notebooks/$$name.ipynb book/$$name.ipynb; \
		$(PY) -m replicate.book book/$$name.ipynb; \
	done
	$(PY) -m replicate.book --execution book _build/reads
	$(BIN)/jupyter-book build . -W -n --keep-going --path-output $(BOOK_OUT)
	@echo "The book: $(BOOK_OUT)/_build/html/index.html"

# The one command a lent GPU call runs (README, "Running on a GPU"), where the machine has make; without it, the
# same line by hand. The GPU image's python3 (torch there, no venv) on this tree, which has no .git there, so the
# commit comes in as SHA (without it the rows carry the digest of src/replicate). Its files land in $OUT (files
# already there count against the 8 that come back); here, `python -m replicate ingest DIR` merges them into
# results/. Paused states of earlier calls travel in the (git-ignored) results/<study>/paused/.
DEADLINE ?= 480
DEVICE_PROFILE ?= next
DEVICE_MEASURE ?= stage_l
DEVICE_WORKERS ?= 8
device:
	PYTHONPATH=src PYTHONUNBUFFERED=1 REPLICATE_GIT_SHA=$(SHA) python3 -m replicate device-run \
		--out "$${OUT:?make device: set OUT to the call's folder}" --deadline-s $(DEADLINE) \
		--profile $(DEVICE_PROFILE) --measure $(DEVICE_MEASURE) --workers $(DEVICE_WORKERS)

# README's findings from the committed results (a test fails when they drift apart)
readme: $(STAMP)
	$(PY) -m replicate.book --readme README.md

clean-book:
	rm -rf _build book/*.ipynb book/figures book/data book/execution.md
