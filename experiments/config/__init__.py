"""The experiments' configuration: typed schemas of every Hydra config group and app, and the
checks that turn a composed config into plain, checked dataclasses.

- :mod:`experiments.config.schemas`: the shared groups (model, gpu, profiles, search, study,
  ...) and the replay / study / report / validate apps; :func:`~experiments.config.schemas.register`
  puts them in Hydra's ConfigStore; ``CONF_DIR`` is the YAML tree (``experiments/conf/``).
- :mod:`experiments.config.characterize`, :mod:`experiments.config.vllm`: the schemas of
  ``splitbench-characterize`` and its vLLM engine.
- :mod:`experiments.config.checks`: values and cross-key checks (``replay_config``,
  ``study_config``): one-line errors naming the dotted key.

Importing this package imports nothing (no Hydra): import the module you need.
"""
