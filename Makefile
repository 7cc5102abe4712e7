# Quickstart targets: `make run` (set up, export gpt-oss-20b once, then the demo) and `make test` (set up, then every check).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?= openai/gpt-oss-20b
SYNTH_DIR ?= $(HOME)/.cache/oss-edge/synthetic

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
# the whole product on a synthetic tiny gpt-oss checkpoint instead (random weights, generated locally).
run: setup
ifeq ($(SYNTHETIC),1)
	@echo "SYNTHETIC=1: a synthetic tiny gpt-oss checkpoint (random weights), not the real model"
	@test -d $(SYNTH_DIR)/tiny || $(BIN)/oss-edge synth $(SYNTH_DIR)/tiny --shape tiny
	@test -f $(SYNTH_DIR)/tiny-model/manifest.json || \
	  $(BIN)/oss-edge export $(SYNTH_DIR)/tiny --out $(SYNTH_DIR)/tiny-model --force --parity
	$(BIN)/oss-edge demo --model $(SYNTH_DIR)/tiny-model
else
	@$(BIN)/oss-edge export $(MODEL) || { status=$$?; test $$status -eq $(EXIT_OUTPUT_EXISTS) && exit 0; \
	  echo ""; \
	  echo "No model could be exported from $(MODEL). Either pass a local checkpoint folder:"; \
	  echo "    make run MODEL=/path/to/gpt-oss-20b"; \
	  echo "or try the whole product on a synthetic tiny checkpoint (random weights, made here):"; \
	  echo "    make run SYNTHETIC=1"; \
	  exit $$status; }
	$(BIN)/oss-edge demo
endif

# Exit codes by name (edge_runtime/errors.py holds the one table).
EXIT_OUTPUT_EXISTS = $$($(BIN)/python -c 'from edge_runtime.errors import ExitCode; print(int(ExitCode.OUTPUT_EXISTS))')

test: setup lint typecheck pytest editors

# The inner loop: lint, types, layering and the tests not marked slow (no exports beyond the tiny model).
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
	$(BIN)/python -m pytest -q -m "not slow"

# The VS Code extension: type check, unit tests and a .vsix (VS Code itself cannot run here).
editors:
	cd editors/vscode && npm ci --no-audit --no-fund --loglevel=error && npm test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
