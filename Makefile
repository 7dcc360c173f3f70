# chiml: the two commands on a fresh machine are `make up` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
TOOLS_BIN := $(CURDIR)/.tools/bin
export PATH := $(TOOLS_BIN):$(PATH)
CONSTRAINTS := requirements/constraints.txt
EXTRAS ?= all
STAMP := $(VENV)/.installed

# Each capability adds its own targets in mk/<area>.mk, so parallel work never edits this file.
-include mk/*.mk

.PHONY: help install tools up down status smoke test test-fast test-slow lint typecheck bench lock clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# The venv is rebuilt only when the pins or the package metadata change.
$(STAMP): $(CONSTRAINTS) pyproject.toml services/serving/pyproject.toml contract/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3" "setuptools==84.2.1" "wheel==0.45.1"
	# torch first, from its exact pin: a resolver left alone would pull a CUDA build.
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) "torch==2.13.0"
	# the contract and the serving runtimes are chiml's own dependencies, installed from this checkout
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e contract -e services/serving -e ".[$(EXTRAS)]"
	@touch $@

install: $(STAMP) ## install every pinned dependency into .venv

tools: ## install the pinned helm, kubectl and terraform into .tools/bin
	$(PYTHON) scripts/install_tools.py --dest .tools

up: install frameworks ## install (platform pins and every framework group), start the local platform (or the configured profile) and print its URLs
	$(BIN)/chiml up

down: ## stop the platform (data is kept)
	$(BIN)/chiml down

status: ## health and URL of every service
	$(BIN)/chiml status

smoke: ## run the smoke suite against the running platform
	$(BIN)/chiml smoke

lint: install tools ## ruff, terraform fmt, helm lint, checkov
	$(BIN)/ruff check platform services tests smoke_tests examples benchmarks scripts
	terraform fmt -check -recursive terraform

typecheck: install ## mypy (strict, config in pyproject.toml) on the control plane
	$(BIN)/mypy

test: install tools frameworks typecheck ## the whole test suite (unit, integration, local end-to-end, every framework example)
	$(BIN)/ruff check platform services tests smoke_tests examples benchmarks scripts
	$(BIN)/python -m pytest -m "not slow" --timeout=900 --durations=40

test-slow: install tools ## long end-to-end suites
	$(BIN)/python -m pytest -m slow --timeout=1800

bench: install ## benchmarks (startup time and RSS, tuning scaling, runtimes)
	$(BIN)/python benchmarks/run_all.py

lock: ## re-resolve pyproject's ranges and freeze them into requirements/constraints.txt
	$(PYTHON) scripts/lock.py

clean: ## remove the venv and tools (not your data under .chiml/)
	rm -rf $(VENV) .tools
