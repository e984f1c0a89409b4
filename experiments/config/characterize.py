"""Structured configs of ``splitbench-characterize`` (the GPU phase profiler app).

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

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from experiments.config.schemas import PathsConf
from experiments.config.schemas import register as register_shared
from experiments.config.vllm import VLLMConf


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
