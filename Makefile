# Quickstart targets: `make run` (set up, export gpt-oss-20b once, then the demo) and `make test` (set up, then every check).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?= openai/gpt-oss-20b

.PHONY: setup run test test-fast lint typecheck pytest pytest-fast editors clean

setup: $(STAMP)

# torch first and pinned exactly: it is the local CPU wheel; anything looser downloads CUDA builds.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[export]' --group dev
	touch $(STAMP)

# The main job: a model folder (exported once), then `oss-edge demo`, which drives the language server as an editor
# would and leaves the model loaded for editors. Offline, or without weights, it says what to do; SYNTHETIC=1 runs
# the whole product on the stand-in instead: a small model of gpt-oss's architecture trained here on Python's
# standard library (models/stand-in, committed), exported like gpt-oss-20b into the models folder.
run: setup
ifeq ($(SYNTHETIC),1)
	@echo "SYNTHETIC=1: the stand-in (models/stand-in), a 10M-parameter model trained on Python's standard library, not gpt-oss"
	@$(BIN)/oss-edge export models/stand-in --out $(STAND_IN_MODEL) || { status=$$?; test $$status -eq $(EXIT_OUTPUT_EXISTS); }
	$(BIN)/oss-edge demo --model $(STAND_IN_MODEL)
else
	@$(BIN)/oss-edge export $(MODEL) || { status=$$?; test $$status -eq $(EXIT_OUTPUT_EXISTS) && exit 0; \
	  echo ""; \
	  echo "No model could be exported from $(MODEL). Either pass a local checkpoint folder:"; \
	  echo "    make run MODEL=/path/to/gpt-oss-20b"; \
	  echo "or try the whole product on the stand-in (a small model trained here, committed):"; \
	  echo "    make run SYNTHETIC=1"; \
	  exit $$status; }
	$(BIN)/oss-edge demo
endif

STAND_IN_MODEL = $$($(BIN)/python -c 'from edge_runtime.paths import models_dir; print(models_dir() / "stand-in")')
# Exit codes by name (edge_runtime/errors.py holds the one table).
EXIT_OUTPUT_EXISTS = $$($(BIN)/python -c 'from edge_runtime.errors import ExitCode; print(int(ExitCode.OUTPUT_EXISTS))')

test: setup lint typecheck pytest editors

# The inner loop: lint, types, layering and the logic of every part (no model, no export, no daemon).
test-fast: setup lint typecheck pytest-fast

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/python -m pytest -q

pytest-fast:
	$(BIN)/python -m pytest -q -m "not slow and not model"

# The VS Code extension: type check, unit tests and a .vsix (VS Code itself cannot run here).
editors:
	cd editors/vscode && npm ci --no-audit --no-fund --loglevel=error && npm test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
