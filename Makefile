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
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[sweep]'
	touch $@

# torch is pinned to the CPU wheel first, so the gpu extra's range installs no CUDA build.
$(VENV)/.dev: $(VENV)/.base
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[sweep,gpu,dev]'
	touch $@

run: $(VENV)/.base
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
