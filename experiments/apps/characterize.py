"""splitbench-characterize: profile prefill and decode of a TP shard on one GPU (or the CPU).

    splitbench-characterize model=llama2-70b shard.tp=8 sweep=paper
    splitbench-characterize -m model=llama2-70b,bloom-176b sweep=reduced layers=8
    splitbench-characterize model=tiny-llama device=cpu sweep=tiny power=off

Writes ``<out_dir>/<run_name>/profiles.csv`` (contract 2) with ``infeasible.csv``,
``details.csv`` and ``profiles.meta.json`` (see :mod:`characterize.measure.profiler`), prints a summary
and, when the GPU has a spec and ``fit=true``, the phase model's held-out errors. ``out_dir``
defaults to ``${paths.root}/results/profiles`` (under SPLITBENCH_ROOT when set), the folder
``profiles=measured`` reads.
Bad options are one line ``error: ...`` with exit status 2. torch is imported only by
:func:`run`, through the profiler.
"""

from __future__ import annotations

import math
import re
import sys

from omegaconf import DictConfig, OmegaConf

from experiments.apps._cli import launch
from experiments.config.characterize import register
from experiments.config.schemas import CONF_DIR
from experiments.errors import ExperimentError

IMPLS = ("native", "transformers")
#: Hydra launchers that run several jobs at once on this machine: several points profiled on one
#: GPU at the same time would disturb each other's timings and power readings
PARALLEL_LAUNCHERS = ("joblib", "ray", "submitit_local")
_PARALLEL_TARGETS = ("JoblibLauncher", "RayLauncher", "LocalLauncher")
CPU_HINT = "splitbench-characterize model=tiny-llama device=cpu sweep=tiny power=off"
ENGINES = ("harness", "vllm")
DTYPES = ("auto", "bfloat16", "float16", "float32")
POWER_MODES = ("auto", "required", "off")


def profile_config(cfg: DictConfig):
    """The :class:`characterize.measure.profiler.ProfileConfig` of a composed app config.

    Raises :class:`ExperimentError` naming the key of a bad value.
    """
    from characterize.measure.profiler import ProfileConfig, ProfilerError, SweepSpec, TimingOptions

    model = cfg.model.name if isinstance(cfg.model, DictConfig) else cfg.model
    if not model:
        raise ExperimentError("model: missing (e.g. model=llama2-70b)")
    if cfg.engine not in ENGINES:
        raise ExperimentError(f"engine: must be one of {', '.join(ENGINES)}, got '{cfg.engine}'")
    if cfg.impl not in IMPLS:
        raise ExperimentError(f"impl: must be one of {', '.join(IMPLS)}, got '{cfg.impl}'")
    if cfg.dtype not in DTYPES:
        raise ExperimentError(f"dtype: must be one of {', '.join(DTYPES)}, got '{cfg.dtype}'")
    if cfg.power.mode not in POWER_MODES:
        raise ExperimentError(
            f"power.mode: must be one of {', '.join(POWER_MODES)}, got '{cfg.power.mode}'"
        )
    if not re.fullmatch(r"cpu|cuda(:\d+)?", str(cfg.device)):
        raise ExperimentError(f"device: must be cpu, cuda or cuda:N, got '{cfg.device}'")
    if cfg.shard.tp < 1:
        raise ExperimentError(f"shard.tp: must be >= 1, got {cfg.shard.tp}")
    if cfg.layers is not None and cfg.layers < 1:
        raise ExperimentError(f"layers: must be null or >= 1, got {cfg.layers}")
    if cfg.power_cap_w is not None and not cfg.power_cap_w > 0:
        raise ExperimentError(f"power_cap_w: must be null or > 0 W, got {cfg.power_cap_w}")
    if cfg.power.sample_hz <= 0:
        raise ExperimentError(f"power.sample_hz: must be > 0, got {cfg.power.sample_hz}")
    if cfg.power_cap_w is not None and cfg.power.mode == "off":
        raise ExperimentError("power_cap_w: a power cap needs NVML (power=auto or required)")
    t = cfg.sweep.timing
    try:
        sweep = SweepSpec.from_grids(
            str(cfg.sweep.name),
            OmegaConf.to_container(cfg.sweep.prefill, resolve=True),
            OmegaConf.to_container(cfg.sweep.decode, resolve=True),
        )
        timing = TimingOptions(
            warmup=int(t.warmup),
            repeats=int(t.repeats),
            min_window_s=float(t.min_window_s),
            max_repeats=int(t.max_repeats),
            max_point_s=float(t.max_point_s),
        )
    except ProfilerError as e:
        raise ExperimentError(str(e)) from None
    if not sweep.points():
        raise ExperimentError(f"sweep: '{sweep.name}' has no points")
    progress = sys.stderr.isatty() if cfg.progress is None else bool(cfg.progress)
    pc = ProfileConfig(
        model=str(model),
        sweep=sweep,
        tp=int(cfg.shard.tp),
        layers=None if cfg.layers is None else int(cfg.layers),
        impl=str(cfg.impl),
        device=str(cfg.device),
        dtype=str(cfg.dtype),
        cuda_graphs=bool(cfg.cuda_graphs),
        compile_mode=cfg.compile_mode,
        power=str(cfg.power.mode),
        sample_hz=float(cfg.power.sample_hz),
        power_cap_w=None if cfg.power_cap_w is None else float(cfg.power_cap_w),
        allow_power_cap=bool(cfg.allow_power_cap),
        gpu_label=cfg.gpu_label,
        seed=int(cfg.seed),
        timing=timing,
        out_dir=out_dir(cfg),
        run_name=cfg.run_name,
        progress=progress,
        resume=bool(cfg.resume),
    )
    pc.shard()  # model name and tp divisibility: SpecError now, not after loading torch
    if pc.power_cap_w is not None and not pc.allow_power_cap:
        raise ExperimentError(
            "power_cap_w: setting a power limit needs allow_power_cap=true (only on machines you own)"
        )
    return pc


def out_dir(cfg: DictConfig) -> str:
    """``out_dir`` as a path: relative to ``paths.root`` (the launch folder, or SPLITBENCH_ROOT),
    as every results folder is; the default is ``${paths.root}/results/profiles``, the folder
    ``profiles=measured`` reads."""
    from pathlib import Path

    path = Path(str(cfg.out_dir))
    return str(path if path.is_absolute() else Path(str(cfg.paths.root)) / path)


def _fmt(x: float, scale: float = 1.0, spec: str = ".3f") -> str:
    return (
        "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x * scale, spec)
    )


def summarize(run) -> str:
    """A plain-text table of a run's rows."""
    lines = [f"profile: {run.csv_path}"]
    lines.append(
        f"{'phase':8} {'batch':>5} {'tokens':>6} {'latency ms':>11} {'std ms':>8} {'power W':>8} {'J/iter':>8}"
    )
    for r in run.profiles.itertuples(index=False):
        lines.append(
            f"{r.phase:8} {int(r.batch_size):5d} {int(r.tokens_per_request):6d} "
            f"{_fmt(r.latency_s, 1e3):>11} {_fmt(r.latency_std_s, 1e3):>8} "
            f"{_fmt(r.power_w, 1, '.0f'):>8} {_fmt(r.energy_j, 1, '.3f'):>8}"
        )
    for r in run.infeasible.itertuples(index=False):
        lines.append(
            f"{r.phase:8} {int(r.batch_size):5d} {int(r.tokens_per_request):6d}  infeasible: {r.reason}"
        )
    return "\n".join(lines)


def fit_report(run, gpu: str, model: str, tp: int) -> str | None:
    """Fit the phase model on the run's rows; its held-out error lines (None if not fittable)."""
    from characterize.modeling.specs import list_specs

    known = set(list_specs("gpus"))
    try:
        from characterize.modeling.profiles import known_profile_gpus

        known |= set(known_profile_gpus())
    except ImportError:
        pass
    if gpu not in known or model not in list_specs("models"):
        return f"fit skipped: no spec for gpu '{gpu}' or model '{model}'"
    phases = set(run.profiles["phase"])
    if phases != {"prefill", "decode"}:
        return "fit skipped: needs measured rows of both phases"
    from characterize.modeling.phase_model import fit_phase_model

    pm = fit_phase_model(run.profiles, model, gpu, tp)
    out = []
    for r in pm.fit_report():
        line = (
            f"fit {r.get('phase')}: held-out MAPE {_fmt(r.get('mape'), 100, '.1f')}%, "
            f"max {_fmt(r.get('max_error'), 100, '.1f')}% over {r.get('points')} points"
        )
        if r.get("note"):
            line += f" ({r['note']})"
        out.append(line)
    return "\n".join(out)


def check_launcher(argv: list[str]) -> None:
    """Refuse a parallel launcher (``hydra/launcher=joblib|ray|submitit_local``) on the command
    line: one-line :class:`ExperimentError`."""
    for a in argv:
        m = re.fullmatch(r"\+{0,2}hydra/launcher=(\S+)", a)
        if m and m.group(1) in PARALLEL_LAUNCHERS:
            raise ExperimentError(
                f"hydra/launcher: '{m.group(1)}' runs several points at once on one GPU, which "
                "corrupts the measurements; characterize multiruns use the default (basic, one "
                "point after another) or submitit_slurm (one GPU per job)"
            )


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


def check_device(device: str) -> None:
    """A ``cuda`` device needs a CUDA GPU (and a CUDA build of torch): else one line naming the
    CPU alternative, as ``benchmarks/gpu_check.py`` says it. Imports torch."""
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        why = "torch has no CUDA build" if torch.version.cuda is None else "no CUDA GPU visible"
        raise ExperimentError(f"device: {device}: {why} (for a CPU smoke run: {CPU_HINT})")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise ExperimentError(
            f"device: {device}: only {torch.cuda.device_count()} CUDA device(s) visible"
        )


def run(cfg: DictConfig):
    """Profile per ``cfg`` (a composed ``characterize`` config); returns the ProfileRun."""
    from characterize.measure.profiler import profile_phase

    _check_running_launcher()
    pc = profile_config(cfg)
    check_device(pc.device)
    engine = None
    if cfg.engine == "vllm":  # issue 11: a real engine's iterations (experiments/vllm_profile.py)
        from experiments.vllm_profile import vllm_engine

        pc, engine = vllm_engine(cfg, pc)
    try:
        result = profile_phase(pc, engine=engine, log=lambda s: print(s, file=sys.stderr))
    finally:
        if engine is not None:
            engine.close()
    print(summarize(result))
    gpu = result.metadata["gpu"]
    if cfg.fit and not result.profiles.empty:
        text = fit_report(result, gpu, pc.model, pc.tp)
        if text:
            print(text)
    return result


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


__all__ = ["CONF_DIR", "main", "profile_config", "register", "run", "summarize"]
