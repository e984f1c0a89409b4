"""The sections of ``splitbench-validate``'s typed config, one concern per module
(:mod:`experiments.validation.config` assembles them into :class:`ValidateConfig`):

- :mod:`.checks`: the one-line checks every section uses (``key: must be ...``) and core lists;
- :mod:`.model`: ``model`` and the served folder's shape against the model spec;
- :mod:`.loads`: ``load_defaults`` and each entry of ``loads``;
- :mod:`.deploy`: ``deploy`` (the instances, their ports and cores, the KV connector);
- :mod:`.measure`: ``calibrate``, ``probes`` and ``profile`` (what is measured before the replays);
- :mod:`.run`: ``simulate``, ``loadgen`` and ``preflight``;
- :mod:`.judging`: ``ladder`` (with its ``slo``) and ``compare``.

Every default is written once, in these dataclasses. No omegaconf or Hydra here.
"""
