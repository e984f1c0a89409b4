# Two commands for a fresh clone: `make run` (main job, bundled data, no GPU) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test lint bench clean

$(VENV)/.base: pyproject.toml
	@echo "make: creating $(VENV) and installing splitbench with numpy, pandas, hydra, joblib,"
	@echo "make: matplotlib and seaborn (no torch; ~1-2 min, quiet while pip works)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[sweep]'
	@echo "make: base install done"
	touch $@

# torch is pinned to the CPU wheel first, so the gpu extra's range installs no CUDA build.
$(VENV)/.dev: $(VENV)/.base
	@echo "make: installing the CPU torch wheel (torch==2.13.0, ~200 MB; ~1 min)"
	$(PIP) install torch==2.13.0
	@echo "make: installing transformers, nvidia-ml-py, pytest, hypothesis and ruff (~1 min)"
	$(PIP) install -e '.[sweep,gpu,dev]'
	@echo "make: test environment ready"
	touch $@

run: $(VENV)/.base
	@echo "make: running the default study (splitbench-study; ~10-25 min on 2 cores, a rerun"
	@echo "make: reads every point from results/cache)"
	$(VENV)/bin/splitbench-study

test: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

bench: $(VENV)/.base
	$(PY) benchmarks/replay_speed.py

clean:
	rm -rf $(VENV) outputs multirun
