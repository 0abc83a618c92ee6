# The README's commands. Each target creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A CPU build of torch where one is at hand; any torch>=2.2 works.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-base: $(BIN)/python pyproject.toml aacdata/codecs/_fastaac.c
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH_SPEC)" || $(BIN)/pip install --quiet "torch>=2.2"
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-base
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed-base
	$(BIN)/aacdata demo

test: $(VENV)/.installed-dev
	$(BIN)/ruff check aacdata tests examples benchmarks
	$(BIN)/ruff format --check aacdata tests examples benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q -m "not slow"

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_windows.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
