"""splitbench-validate: the simulator against a real vLLM deployment (issues 12, 22).

Modules:
- :mod:`.config`: the typed config (the Hydra schema's dataclasses), every check one line; its
  sections, one module each, in :mod:`.schema`;
- :mod:`.pipeline`: the steps of a run, in order (the app is only its door);
- :mod:`.live`: the steps that talk to the running deployment (calibrate, probe, replay) and
  the deployment they share, with their records;
- :mod:`.tools`: our console scripts run as steps (bounded, logged, one-line failures);
- :mod:`.errors`: :class:`StepError`, the one-line error of a validation step;
- :mod:`.procs`: server processes in their own process groups (health wait, shutdown, no
  orphans), port checks, core binding;
- :mod:`.preflight`: the machine's load (refuse or flag a busy one), ports, engine run-delay;
- :mod:`.engine_metrics`: what the engines report: the prefix-cache counters (must stay at
  zero) and their KV capacity;
- :mod:`.model_dir`: the served model folder, built from the model spec;
- :mod:`.deploy`: the co-located (one vLLM) and disaggregated (prefill + decode + proxy)
  deployments;
- :mod:`.proxy`: the disaggregated-prefill proxy and the co-located router (aiohttp services
  sharing :mod:`.relay`);
- :mod:`.calibrate`: the KV-transfer calibration (time = a + b * tokens, through the proxy);
- :mod:`.sse`: vLLM's streamed completions read as events (probes and calibration);
- :mod:`.probes`: the serving probes (alpha, delta, hand-over stall, legs, the engines' KV
  blocks): the serving component's terms measured on the running deployment;
- :mod:`.serving_fit`: the serving terms fitted from the probes' records (pure);
- :mod:`.simargs`: the simulator as the deployment (replay overrides, the measured serving
  terms and KV blocks; the calibrated hand-over with the reference policy);
- :mod:`.predict`: the simulator's capacity C and R* that place the rate ladder;
- :mod:`.compare`: sim vs real on any two contract-4 run directories (error table, CDFs);
- :mod:`.judge`, :mod:`.scoring`: paired bootstrap errors, capacity, R*, the rate ladder
  (errors.csv, capacity.csv);
- :mod:`.workload`: the scaled trace of one load level (read by sim and load generator);
- :mod:`.steps`: the cached steps of a validation run directory;
- :mod:`.report`: report.md, its CSVs and figures (one module per group of sections).

Nothing here imports torch or vllm at module level, nor Hydra/omegaconf, nor the apps layer.
"""
