"""splitbench-validate: the simulator against a real vLLM deployment (issue 12).

Modules:
- :mod:`.errors`: :class:`StepError`, the one-line error of a validation step;
- :mod:`.procs`: server processes in their own process groups (health wait, shutdown, no
  orphans), port checks, core binding;
- :mod:`.model_dir`: the tiny random-weight Llama model directory (built from a config);
- :mod:`.deploy`: the co-located (one vLLM) and disaggregated (prefill + decode + proxy)
  deployments;
- :mod:`.proxy`: the disaggregated-prefill proxy (an aiohttp service);
- :mod:`.calibrate`: the KV-transfer calibration (time = a + b * tokens, through the proxy);
- :mod:`.compare`: sim vs real on any two contract-4 run directories (error table, CDFs);
- :mod:`.workload`: the scaled trace of one load level (read by sim and load generator);
- :mod:`.steps`: the cached steps of a validation run directory.

Nothing here imports torch or vllm at module level; Hydra stays in experiments/apps/validate.py.
"""
