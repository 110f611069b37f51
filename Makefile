# sr-ablation: set-up, the study, the book and the tests.
#   make book                 set up .venv, fetch data, run the sweep, build the book
#   make test                 set up .venv and run the whole test suite (what CI runs)
#   make publish              build the book from the committed cpu results (training nothing)
#                             and push it to the gh-pages branch (refuses a dirty tree)
#   make gpu-check            on a machine with a CUDA GPU: the GPU check (prints "no GPU" else)
# Options: PROFILE=cpu|smoke|paper  TASKS=1,3  SCALES=3 (every task at x3; default: each
#          task at the scales it defines)
#          MIRROR=../shared/datasets (offline data)
#          RESULTS=DIR (another results folder: an empty one retrains everything from scratch)
#          REMOTE=origin (the git remote, name or URL, that `make publish` pushes gh-pages to)
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1 && echo paper || echo cpu)
SCALES ?=
SCALES_FLAG := $(if $(SCALES),--scales $(SCALES),)
TASKS ?=
TASKS_FLAG := $(if $(TASKS),--tasks $(TASKS),)
MIRROR ?= $(ABLATION_MIRROR)
MIRROR_FLAG := $(if $(MIRROR),--mirror $(MIRROR),)
RESULTS ?=
RESULTS_FLAG := $(if $(RESULTS),--results $(RESULTS),)
PYTEST_ARGS ?=
REMOTE ?= origin

.PHONY: venv data sweep book publish test test-fast lint clean-book gpu-check

$(BIN)/.installed: pyproject.toml .ci/install-torch.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	bash .ci/install-torch.sh $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[book,dev]"
	touch $@

venv: $(BIN)/.installed

data: venv
	$(BIN)/ablation data fetch benchmark $(MIRROR_FLAG)
	$(BIN)/ablation data fetch 291 $(MIRROR_FLAG)

sweep: data
	$(BIN)/ablation sweep $(TASKS_FLAG) $(SCALES_FLAG) --profile $(PROFILE) $(RESULTS_FLAG)

book: sweep
	$(BIN)/ablation book
	@echo "book: file://$(CURDIR)/_build/html/index.html"

publish: data
	$(BIN)/ablation book --publish --output . --remote $(REMOTE)

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: venv
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

gpu-check: venv
	$(BIN)/python benchmarks/gpu_check.py $(MIRROR_FLAG) --json gpu_check.json

lint: venv
	$(BIN)/ruff check ablation tests benchmarks

clean-book:
	rm -rf _build
