# Two commands on a fresh machine with Python >= 3.11, pip and make:
#   make demo   create .venv, install the package, run `retgen-ref demo`
#   make test   install the test and bench extras too, run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.full: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $@ $(VENV)/.core

demo: $(VENV)/.core
	$(BIN)/retgen-ref demo

test: $(VENV)/.full
	$(BIN)/python -m pytest

bench: $(VENV)/.full
	$(BIN)/python benchmarks/bench_flat.py
	$(BIN)/python benchmarks/bench_quantizers.py
	$(BIN)/python benchmarks/bench_ann.py
	$(BIN)/python benchmarks/bench_overhead.py
	$(BIN)/python benchmarks/bench_roofline.py
	$(BIN)/python benchmarks/bench_filter.py
	$(BIN)/python benchmarks/bench_lm.py
	$(BIN)/python benchmarks/bench_generation.py
	$(BIN)/python benchmarks/bench_online.py
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/python benchmarks/bench_ablation.py
	$(BIN)/python benchmarks/bench_scale.py
	$(BIN)/python benchmarks/bench_rag.py

clean:
	rm -rf $(VENV) build *.egg-info
