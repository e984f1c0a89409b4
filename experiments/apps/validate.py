"""splitbench-validate: the simulator against a real vLLM deployment (issues 12 and 22).

    splitbench-validate [designs=[baseline,splitwise]] [repeats=3] [hydra.run.dir=DIR]

This is the door: it composes the config (``conf/validate.yaml`` on the typed schema of
:mod:`experiments.validation.config`), checks every value, port and core before anything starts,
and hands the plain config to :func:`experiments.validation.pipeline.run`, whose doc lists the
steps. A mistake is one line naming the key or the step, exit 2; Ctrl-C is one line, exit 130
(finished steps are kept and a rerun resumes from them); every server started is stopped.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.apps._cli import launch
from experiments.errors import ExperimentError
from experiments.validation.config import ValidateConfig

INTERRUPTED = "interrupted: finished steps are kept; rerun the same command to resume"


def _loadgen_overrides_ok(c: ValidateConfig) -> None:
    """Compose the load generator's config with ``loadgen.overrides`` (and what the pipeline
    sets) and run its checks now, not after the servers are up."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from experiments.apps.loadgen import check_config as loadgen_check
    from experiments.config.compose import compose_error_line
    from experiments.config.schemas import CONF_DIR

    spec = c.model.spec()
    ov = ["trace=path", "trace.path=trace.csv", "target.base_url=http://127.0.0.1:1",
          f"target.max_model_len={c.deploy.max_model_len}",
          f"target.vocab_size={spec.vocab_size}", *c.loadgen.overrides]  # fmt: skip

    def check():
        try:
            lg = compose("loadgen", overrides=ov)
        except Exception as e:  # noqa: BLE001 - Hydra's classes; all are user errors
            raise ExperimentError(f"loadgen.overrides: {compose_error_line(e)}") from None
        try:
            loadgen_check(lg)
        except ExperimentError as e:
            raise ExperimentError(f"loadgen.overrides: {e}") from None

    if GlobalHydra.instance().is_initialized():
        check()
    else:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            check()


def load_config(cfg: DictConfig) -> ValidateConfig:
    """The typed, checked config (ExperimentError naming the first bad key)."""
    try:
        c = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        msg = str(e).splitlines()[0]
        raise ExperimentError(f"{key}: {msg}" if key else msg) from None
    c.check()
    _loadgen_overrides_ok(c)
    return c


def _validate(cfg: DictConfig) -> None:
    load_config(cfg)


def run(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    from experiments.validation.pipeline import run as run_pipeline

    c = load_config(cfg)
    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig

        run_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else "."
    return run_pipeline(c, run_dir, ["splitbench-validate", *sys.argv[1:]])


def main(argv: list[str] | None = None) -> None:
    launch("validate", run, _validate, argv, interrupted=INTERRUPTED)


if __name__ == "__main__":
    main()
