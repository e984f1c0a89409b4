"""splitbench-characterize: profile prefill and decode of a TP shard on one GPU (or the CPU).

    splitbench-characterize model=llama2-70b shard.tp=8 sweep=paper
    splitbench-characterize -m model=llama2-70b,bloom-176b sweep=reduced layers=8
    splitbench-characterize model=tiny-llama device=cpu sweep=tiny power=off

Writes ``<out_dir>/<run_name>/profiles.csv`` (contract 2) with ``infeasible.csv``,
``details.csv`` and ``profiles.meta.json`` (see :mod:`characterize.measure.profiler`), prints a summary
and, when the GPU has a spec and ``fit=true``, the phase model's held-out errors. ``out_dir``
defaults to ``${paths.root}/results/profiles`` (under SPLITBENCH_ROOT when set), the folder
``profiles=measured`` reads.
Bad options are one line ``error: ...`` with exit status 2. The config and its checks are
:mod:`experiments.config.characterize`; the run is :func:`experiments.profiling.profile` (torch
is imported only then, through the profiler).
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig, OmegaConf

from experiments.apps._cli import launch
from experiments.config.characterize import check_launcher, profile_config, register
from experiments.config.schemas import CONF_DIR
from experiments.errors import ExperimentError

_PARALLEL_TARGETS = ("JoblibLauncher", "RayLauncher", "LocalLauncher")


def _check_running_launcher() -> None:
    """The same refusal inside a job (a launcher chosen in a config file, not argv)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    target = str(HydraConfig.get().launcher.get("_target_", ""))
    if any(target.endswith(t) for t in _PARALLEL_TARGETS):
        raise ExperimentError(
            f"hydra.launcher: {target.rsplit('.', 1)[-1]} runs several points at once on one "
            "GPU, which corrupts the measurements; use the basic launcher or submitit_slurm"
        )


def run(cfg: DictConfig):
    """Profile per ``cfg`` (a composed ``characterize`` config); returns the ProfileRun."""
    from experiments.profiling import profile

    _check_running_launcher()
    pc = profile_config(cfg)
    vllm = OmegaConf.to_object(cfg.vllm) if cfg.engine == "vllm" else None
    return profile(pc, vllm=vllm, fit=bool(cfg.fit))


def main(argv: list[str] | None = None) -> None:
    """Console entry point ``splitbench-characterize``.

    A plain run (no ``-m``, ``--cfg``, ... flags) composes and checks the overrides first, so
    an unknown option or a bad value is one line ``error: ...`` with exit status 2; errors of
    the run itself (spec, profiler, power) are one line too (:mod:`experiments.apps._cli`).
    """
    try:
        check_launcher(list(sys.argv[1:] if argv is None else argv))
    except ExperimentError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    launch("characterize", run, profile_config, argv, registers=(register,))


if __name__ == "__main__":
    main()


__all__ = ["CONF_DIR", "main", "profile_config", "register", "run"]
