"""Structured configs of ``splitbench-characterize`` (the GPU phase profiler app), and the
checked :class:`characterize.measure.profiler.ProfileConfig` a composed config makes
(:func:`profile_config`).

Registered into Hydra's ConfigStore by :func:`register` (idempotent): the app schema
``characterize_schema``, the groups ``shard``, ``sweep`` and ``power`` are typed by these
dataclasses, so a misspelt key or a wrongly typed value fails at composition. The tiny CPU
smoke-test models ``tiny-llama`` / ``tiny-bloom`` are ordinary options of the shared ``model``
group (``conf/model/tiny-*.yaml``, specs under ``characterize/modeling/specs/models``), so the
replay takes them too. ``paths`` is the shared folders' group (``conf/paths``): profiles go to
``${paths.root}/results/profiles``, where ``profiles=measured`` reads. Units: seconds, hertz,
watts.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from experiments.config.schemas import PathsConf
from experiments.config.schemas import register as register_shared
from experiments.config.vllm import VLLMConf
from experiments.errors import ExperimentError

IMPLS = ("native", "transformers")
#: Hydra launchers that run several jobs at once on this machine: several points profiled on one
#: GPU at the same time would disturb each other's timings and power readings
PARALLEL_LAUNCHERS = ("joblib", "ray", "submitit_local")
ENGINES = ("harness", "vllm")
DTYPES = ("auto", "bfloat16", "float16", "float32")
POWER_MODES = ("auto", "required", "off")


@dataclass
class ShardConf:
    tp: int = field(
        default=8, metadata={"help": "tensor-parallel degree k: heads, kv heads, FFN, vocab / k"}
    )


@dataclass
class TimingConf:
    warmup: int = field(default=2, metadata={"help": "untimed runs per point"})
    repeats: int = field(default=5, metadata={"help": "minimum timed repetitions per point"})
    min_window_s: float = field(
        default=0.5, metadata={"help": "s: repeat until the power window lasts this long"}
    )
    max_repeats: int = field(
        default=5000, metadata={"help": "upper bound of repetitions per point"}
    )
    max_point_s: float = field(default=60.0, metadata={"help": "s: time budget of one point"})


@dataclass
class SweepConf:
    name: str = field(default="custom", metadata={"help": "sweep name (part of the run name)"})
    prefill: list[Any] = field(
        default_factory=list,
        metadata={"help": "grids {batch: [...], prompt: [...]}: union of their cartesian products"},
    )
    decode: list[Any] = field(
        default_factory=list,
        metadata={
            "help": "grids {batch: [...], context: [...]}: union of their cartesian products"
        },
    )
    timing: TimingConf = field(default_factory=TimingConf)


@dataclass
class PowerConf:
    mode: str = field(default="auto", metadata={"help": "auto | required | off"})
    sample_hz: float = field(default=50.0, metadata={"help": "Hz: board-power sampling rate"})


@dataclass
class CharacterizeApp:
    model: Any = None  # the shared model group: {name, display, tp}
    shard: ShardConf = field(default_factory=ShardConf)
    sweep: SweepConf = field(default_factory=SweepConf)
    power: PowerConf = field(default_factory=PowerConf)
    device: str = "cuda"
    impl: str = "native"
    engine: str = "harness"  # harness (the suite's own, impl=...) | vllm (see vllm.*)
    vllm: VLLMConf = field(default_factory=VLLMConf)
    layers: int | None = None
    dtype: str = "auto"
    cuda_graphs: bool = True
    compile_mode: str | None = None
    power_cap_w: float | None = None
    allow_power_cap: bool = False
    gpu_label: str | None = None
    seed: int = 0
    paths: PathsConf = field(default_factory=PathsConf)  # the shared folders (conf/paths)
    # the folder profiles=measured reads (conf/characterize.yaml); relative: under paths.root
    out_dir: str = "${paths.root}/results/profiles"
    run_name: str | None = None
    resume: bool = True
    progress: bool | None = None
    fit: bool = True


_REGISTERED = False


def register() -> None:
    """Register the app schema and the group schemas, and the shared ones with the ``sb_root``
    resolver ``paths.root`` uses (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    register_shared()
    cs = ConfigStore.instance()
    cs.store(name="characterize_schema", node=CharacterizeApp)
    cs.store(group="shard", name="schema", node=ShardConf)
    cs.store(group="sweep", name="schema", node=SweepConf)
    cs.store(group="power", name="schema", node=PowerConf)
    _REGISTERED = True


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
