# dfdetect: every target works on a fresh clone; the first one run builds .venv.
#   make train export deploy    the main job, on the generated demo data by default
#   make test                   the test suite
# Run `make help` for the targets and the variables they take.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

DATA ?=
PREPARED ?=
PREPARE_ARGS ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install prepare test bench-prepare clean

help: ## list targets and variables
	@echo "Targets:"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'
	@echo
	@echo "Variables:"
	@echo "  DATA=DIR          dataset folder (DFDC, Celeb-DF v2, or real/ + fake/); empty: generated demo data"
	@echo "  PREPARED=DIR      where prepared face crops go (default data/prepared/<dataset name>)"
	@echo "  PREPARE_ARGS=...  more 'dfdetect prepare' flags, e.g. '--frames 16 --workers 8'"
	@echo "  PYTEST_ARGS=...   extra pytest arguments for 'make test'"
	@echo "  PYTHON=python3    interpreter the virtual environment is built from"

install: $(INSTALLED) ## create .venv and install dfdetect (editable) with everything the tests need

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

prepare: install ## frames -> MTCNN face crops -> leak-free TFRecord splits (demo data if no DATA)
	$(BIN)/dfdetect prepare $(if $(DATA),--data $(DATA)) $(if $(PREPARED),--out $(PREPARED)) $(PREPARE_ARGS)

test: install ## run the test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench-prepare: install ## frames/s and faces/s of data preparation against the naive pipeline
	$(BIN)/python -m dfdetect.training.bench_prepare

clean: ## remove generated data, runs and model repositories (keeps .venv)
	rm -rf data runs model_repository reports .pytest_cache
