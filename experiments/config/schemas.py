"""Structured configs of the experiment apps: one dataclass per config group.

Every group of ``experiments/conf/`` is validated by the dataclass registered here in Hydra's
ConfigStore, so a misspelt key or a wrongly typed value fails at composition, naming the key,
before anything runs. Each field carries its meaning and unit as ``metadata["help"]``.

The simulator's settings are the library's own dataclasses (no copy here):
``design`` -> :class:`replay.designs.DesignConfig`, ``trace`` ->
:class:`traces.transforms.TraceConfig`, ``scheduler`` -> :class:`replay.scheduler.SchedulerConfig`
(``scheduler.kv_transfer`` -> :class:`replay.kv_transfer.KVTransferConfig`), ``slo`` ->
:class:`replay.slo.SLO`. Their ``__post_init__`` checks the values (one line starting with the
dotted key) when :mod:`experiments.config.checks` builds them with ``OmegaConf.to_object``.

Machine, model and GPU facts are NOT repeated here: configs name specs
(``characterize/modeling/specs``) and the code reads the numbers from there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from characterize.modeling.phase.adjust import PhaseAdjust
from characterize.modeling.phase.model_set import REFERENCE_GPU, REFERENCE_TP
from experiments.config.fields import opt as _f
from experiments.config.loadgen import ClientConf, LengthsConf, TargetConf
from experiments.errors import ExperimentError
from experiments.validation.config import ValidateConfig
from replay.designs import DesignConfig
from replay.scheduler import SchedulerConfig
from replay.serving import ServingConfig
from replay.slo import SLO
from traces.transforms import TraceConfig


@dataclass
class ModelConf:
    name: str = _f(
        MISSING, "model spec name in characterize/modeling/specs/models (e.g. llama2-70b)"
    )
    display: str = _f("", "name shown in tables and figures (the spec's display_name when empty)")
    tp: int = _f(8, "devices of one instance; a node runs num_gpus // tp instances")


@dataclass
class GpuConf:
    name: str = _f(MISSING, "short GPU name used in labels (a100, h100, h100-cap, h200)")
    machine: str = _f(
        MISSING, "machine spec name in characterize/modeling/specs/machines (dgx-h100, ...)"
    )
    display: str = _f("", "name shown in tables and figures")


# The groups design, trace, scheduler (with scheduler.kv_transfer) and slo take the library's own
# dataclasses as their schemas: each option is declared, documented and checked (in the class's
# __post_init__, when the config is built with OmegaConf.to_object) once, there.
DesignConf = DesignConfig
TraceConf = TraceConfig
SchedulerConf = SchedulerConfig
SloConf = SLO


def _mutable(cls: type) -> type:
    """The Hydra schema of a frozen library dataclass: the same fields, defaults and help, not
    frozen (OmegaConf makes a frozen schema's nodes read-only, so overrides would fail). The
    values are checked when the library class is built from it (experiments.config.checks)."""
    return make_dataclass(
        f"{cls.__name__}Schema",
        [(f.name, f.type, field(default=f.default, metadata=f.metadata)) for f in fields(cls)],
    )


#: group ``serving``: the serving component (replay.serving.ServingConfig, frozen)
ServingConf = _mutable(ServingConfig)


@dataclass
class ProfilesConf:
    set: str = _f(
        "paper",
        "profile set: 'paper' (the Splitwise paper's DGX data; 'reference' is its old name) or "
        "'aic' (tables composed from AIConfigurator's measured operator latencies: engine, "
        "engine_version, dtype); every GPU a design needs: measured, else composed, else derived "
        "(characterize.modeling.profile_sets)",
    )
    engine: str = _f("", "aic set: the engine (vllm, sglang, trtllm)")
    engine_version: str = _f("latest", "aic set: the engine version ('latest': the newest composed)")
    dtype: str = _f("bf16", "aic set: the weights' dtype of the composed tables (bf16, fp8)")
    composed_dir: str = _f(
        "", "aic sets: folder of composed tables ('': characterize/modeling/data/composed)"
    )
    source: str = _f(
        "reference",
        "'reference' (paper DGX data), a profile CSV, or a folder (every table under it merged); "
        "an aic set: resolved by the study from engine, engine_version and dtype",
    )
    display: str = _f("", "name shown in the report")
    slo_reference_source: str = _f(
        "reference",
        "profiles of the slowdown reference machine: 'reference' (the paper's DGX-A100 "
        "latencies: fixed per-request targets for every set), 'set' (the study's own profile "
        "set: its A100 of the same engine), a CSV or a folder",
    )
    slo_reference_gpu: str = _f(
        REFERENCE_GPU, "profile gpu key of the slowdown reference (default: the paper's DGX-A100)"
    )
    slo_reference_tp: int = _f(REFERENCE_TP, "tensor parallelism of the slowdown reference")
    measured_dir: str = _f(
        "${paths.root}/results/profiles",
        "folder of measured profiles; H200 designs run only when it has H200 rows",
    )
    adjust: PhaseAdjust = field(
        default_factory=PhaseAdjust,
        metadata={
            "help": "modelling assumptions on the fitted phase models (sensitivity study; "
            "characterize.modeling.phase.adjust); the slowdown reference stays unadjusted"
        },
    )

    def __post_init__(self) -> None:
        if isinstance(self.adjust, dict):  # built from a plain dict (checks its values)
            self.adjust = PhaseAdjust(**self.adjust)
        check_set(self, "profiles", self.composed_dir)


def check_set(p, key: str, composed_dir: str = "") -> None:
    """One line naming ``<key>.<field>`` for an unknown set, or an aic engine, version or dtype
    without composed tables (listing those that exist)."""
    from characterize.modeling.profile_sets import (
        ALIASES,
        COMPOSED_DIR,
        SETS,
        ProfileSetError,
        check_aic,
    )

    if ALIASES.get(p.set, p.set) not in SETS:
        raise ExperimentError(f"{key}.set: unknown set '{p.set}' (known: {', '.join(SETS)})")
    if ALIASES.get(p.set, p.set) == "aic":
        try:
            check_aic(p.engine, p.engine_version, p.dtype, composed_dir or COMPOSED_DIR, key=key)
        except ProfileSetError as e:
            raise ExperimentError(str(e)) from None


@dataclass
class ProfileSetConf:
    """A profile set a study compares beside its own (``profiles``), with the designs it runs."""

    name: str = _f(MISSING, "short key of the set (a value of the tables' profile_set column)")
    set: str = _f("aic", "'aic' or 'paper' (as profiles.set)")
    engine: str = _f("", "aic: the engine (vllm, sglang, trtllm)")
    engine_version: str = _f("latest", "aic: the engine version ('latest': the newest composed)")
    dtype: str = _f("bf16", "aic: the weights' dtype of the composed tables")
    model: str = _f("", "model spec the set runs ('': the study's model)")
    slo_reference: str = _f(
        "set",
        "slowdown reference: 'set' (this set's own A100, tp of profiles.slo_reference_tp) or "
        "'reference' (the paper's DGX-A100: fixed per-request targets, the same for every set)",
    )
    designs: list[str] = _f([], "keys of `designs` run on this set")

    def __post_init__(self) -> None:
        if self.slo_reference not in ("set", "reference"):
            raise ExperimentError(
                f"study.profile_sets.{self.name}.slo_reference: unknown value "
                f"'{self.slo_reference}' (known: set, reference)"
            )
        if self.set not in ("aic", "paper"):  # engines are checked by the study's plan
            raise ExperimentError(
                f"study.profile_sets.{self.name}.set: unknown set '{self.set}' (known: aic, paper)"
            )


@dataclass
class PathsConf:
    root: str = _f("${sb_root:}", "project root: the ORIGINAL working dir, not hydra's run dir")
    results_dir: str = _f("${paths.root}/results", "results folder")
    cache_dir: str = _f("${paths.results_dir}/cache", "one JSON per simulated point")
    study_dir: str = _f("${paths.results_dir}/study", "study outputs, one folder per study")
    report_dir: str = _f("${paths.results_dir}/report", "report.md and figures")


@dataclass
class SearchConf:
    mode: str = _f("bisect", "'bisect' (monotone pruning) or 'grid' (every point; heatmaps)")
    rate_min: float = _f(0.25, "lowest request rate considered, req/s")
    rate_max: float = _f(256.0, "highest request rate considered, req/s")
    rate_step: float = _f(0.05, "relative spacing of the geometric rate grid (0.05 = 5%)")
    rate_start: float = _f(4.0, "first rate tried when galloping, req/s (see per_machine)")
    rate_start_per_machine: float | None = _f(
        None, "budget searches start galloping at this x the machines of the first config"
    )
    frontier: str = _f(
        "refine",
        "configs on a budget frontier: 'exhaustive' (exact, prunes) or 'refine' (coarse+local)",
    )
    coarse_points: int = _f(5, "'refine': evenly spaced frontier configs tried first")
    prompt_min: int = _f(1, "fewest prompt machines considered")
    prompt_max: int = _f(40, "most prompt machines considered")
    token_min: int = _f(1, "fewest token machines considered")
    token_max: int = _f(40, "most token machines considered")
    machines_min: int = _f(1, "baselines: fewest machines considered")
    machines_max: int = _f(100, "baselines: most machines considered")
    n_jobs: int = _f(2, "searches run at once inside the study app (on `backend`)")
    backend: str = _f(
        "joblib", "where searches run: 'joblib' (processes here), 'ray' (a Ray cluster), 'submitit'"
    )
    duration_s: float = _f(600.0, "length of each re-sampled trace, s")
    max_requests: int | None = _f(
        None, "cap on requests per point: duration = min(duration_s, max_requests / rate)"
    )
    seed: int = _f(0, "seed of the re-sampling and of the simulator")


@dataclass
class BudgetConf:
    name: str = _f(MISSING, "label: iso-power, iso-cost or iso-power+cost")
    reference_machine: str = _f("dgx-h100", "machine spec the budget is counted in")
    reference_count: int = _f(40, "budget = this many reference machines' power and/or cost")
    power: bool = _f(True, "the budget limits provisioned power (sum of machine budgets)")
    cost: bool = _f(False, "the budget limits cost ($/h)")


@dataclass
class HeatmapConf:
    design: str = _f("splitwise-hh", "design (a key of `designs`) of the provisioning heatmap")
    trace: str = _f("azure-conv-2023", "trace (a key of `traces`) of the heatmap")
    rate: float = _f(10.0, "request rate of the heatmap, req/s")
    prompt_max: int = _f(10, "prompt machines 1..this")
    token_max: int = _f(10, "token machines 1..this")


@dataclass
class VariantConf:
    name: str = _f(MISSING, "short key of this variant (a row of the variant tables)")
    group: str = _f("", "what is varied (one tornado bar per group), e.g. 'KV transfer'")
    label: str = _f("", "what this variant sets, as the report shows it")
    set: dict[str, Any] = _f(
        {},
        "dotted overrides of the study's settings: scheduler.<key>, profiles.<key> (e.g. "
        "profiles.adjust.overhead_scale), trace.<key> (every trace), design.<key> (every "
        "design it applies to), seed",
    )
    applies_to: str = _f("all", "designs changed: 'all', 'baseline' or 'splitwise'")


@dataclass
class StudySpec:
    name: str = _f("paper-default", "study name: its folder under paths.study_dir")
    description: str = _f("", "one line shown in the report")
    designs: list[str] = _f([], "keys of `designs` compared")
    traces: list[str] = _f([], "keys of `traces` used")
    budgets: list[BudgetConf] = _f([], "iso-power / iso-cost budgets")
    iso_throughput_rates: dict[str, float] = _f(
        {}, "trace key -> target rate (req/s): cost and power each design needs"
    )
    extra_designs: list[str] = _f(
        [],
        "designs run beside `designs` (budgets, iso-throughput) that take no part in variants, "
        "mismatch, load curves or batch jobs; any GPU: its profile comes from the profile set "
        "(measured, composed or derived)",
    )
    profile_sets: list[ProfileSetConf] = _f(
        [], "further profile sets, each run with its own designs beside the study's own set"
    )
    heatmap: bool = _f(False, "compute the provisioning heatmap (grid over machine counts)")
    report: bool = _f(True, "write the report when the study finishes")
    variants: list[VariantConf] = _f(
        [],
        "settings varied one at a time: each design's max rate under the SLO at its "
        "`variant_budget` configuration (or re-provisioned: `reprovision`)",
    )
    variant_budget: str = _f("iso-power", "the budget whose best configurations variants keep")
    reprovision: bool = _f(
        False, "variants re-search the configuration within the budget (many more points)"
    )
    mismatch: bool = _f(
        False, "serve each other trace with each design's best configuration for one trace"
    )
    load_factors: list[float] = _f(
        [], "load curves: rates = these x each design's max rate at its best configuration"
    )
    batch_overload: float | None = _f(
        None, "batch jobs: offered rate = this x the design's SLO max rate (saturation)"
    )
    batch_configs: int = _f(5, "batch jobs: evenly spaced frontier configurations tried")

    def __post_init__(self) -> None:
        self.profile_sets = [
            ProfileSetConf(**p) if isinstance(p, dict) else p for p in self.profile_sets
        ]
        names = [p.name for p in self.profile_sets]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ExperimentError(f"study.profile_sets[{i}].name: '{n}' is used twice")


@dataclass
class PointConf:
    design: str | None = _f(None, "multirun point mode: a key of `designs` (None: run the study)")
    trace: str | None = _f(None, "a key of `traces`")
    rate: float | None = _f(None, "request rate, req/s (re-sampled for search.duration_s)")
    machines: int | None = _f(None, "baseline: machines")
    prompt_machines: int | None = _f(None, "Splitwise: prompt machines")
    token_machines: int | None = _f(None, "Splitwise: token machines")


@dataclass
class CacheConf:
    enabled: bool = _f(True, "reuse simulated points from paths.cache_dir")
    retry_errors: bool = _f(False, "recompute points whose cached result is an error")


@dataclass
class ReplayApp:
    model: ModelConf = field(default_factory=ModelConf)
    gpu: GpuConf = field(default_factory=GpuConf)
    design: DesignConf = MISSING
    trace: TraceConf = MISSING
    scheduler: SchedulerConf = field(default_factory=SchedulerConf)
    serving: ServingConf = field(default_factory=ServingConf)
    slo: SloConf = field(default_factory=SloConf)
    profiles: ProfilesConf = field(default_factory=ProfilesConf)
    paths: PathsConf = field(default_factory=PathsConf)
    seed: int = _f(0, "simulator seed")
    progress: bool | None = _f(None, "progress bar (None: only on a terminal)")


@dataclass
class StudyApp:
    model: ModelConf = field(default_factory=ModelConf)
    gpu: GpuConf = field(default_factory=GpuConf)
    scheduler: SchedulerConf = field(default_factory=SchedulerConf)
    serving: ServingConf = field(default_factory=ServingConf)
    slo: SloConf = field(default_factory=SloConf)
    profiles: ProfilesConf = field(default_factory=ProfilesConf)
    paths: PathsConf = field(default_factory=PathsConf)
    search: SearchConf = field(default_factory=SearchConf)
    cache: CacheConf = field(default_factory=CacheConf)
    designs: dict[str, DesignConf] = field(default_factory=dict)
    traces: dict[str, TraceConf] = field(default_factory=dict)
    study: StudySpec = field(default_factory=StudySpec)
    heatmap: HeatmapConf = field(default_factory=HeatmapConf)
    point: PointConf = field(default_factory=PointConf)


@dataclass
class ReportApp:
    model: ModelConf = field(default_factory=ModelConf)
    gpu: GpuConf = field(default_factory=GpuConf)
    slo: SloConf = field(default_factory=SloConf)
    profiles: ProfilesConf = field(default_factory=ProfilesConf)
    paths: PathsConf = field(default_factory=PathsConf)
    inputs: list[str] = _f([], "run or study folders to read (empty: every study folder)")
    output_dir: str = _f("${paths.report_dir}", "where report.md and figures go")
    phase_figures: bool = _f(True, "draw the phase characterization figures")
    formats: list[str] = _f(["png", "svg"], "figure file formats")
    dpi: int = _f(110, "PNG resolution")


@dataclass
class LoadgenApp:
    """splitbench-loadgen: its own groups are experiments.config.loadgen's dataclasses."""

    trace: TraceConf = MISSING
    target: TargetConf = field(default_factory=TargetConf)
    lengths: LengthsConf = field(default_factory=LengthsConf)
    client: ClientConf = field(default_factory=ClientConf)
    paths: PathsConf = field(default_factory=PathsConf)
    trim: float = _f(0.1, "steady-state window: the share of arrivals cut at each end (< 0.5)")
    seed: int = _f(0, "seed of the prompt token ids / words (with the request id)")
    display: str | None = _f(None, "run name in reports (None: target.name)")


@dataclass
class ValidateApp(ValidateConfig):
    """splitbench-validate: its sections are experiments.validation.config's dataclasses."""

    paths: PathsConf = field(default_factory=PathsConf)


def _original_root() -> str:
    """The directory the user launched from (Hydra's original cwd when inside an app)."""
    env = os.environ.get("SPLITBENCH_ROOT")
    if env:
        return os.path.abspath(env)
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return str(HydraConfig.get().runtime.cwd)
    except Exception:  # noqa: BLE001 - outside a Hydra app there is no runtime
        pass
    return os.getcwd()


_REGISTERED = False


def register() -> None:
    """Register the schemas in the ConfigStore and the ``sb_root`` resolver (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    if not OmegaConf.has_resolver("sb_root"):
        OmegaConf.register_new_resolver("sb_root", _original_root)
    cs = ConfigStore.instance()
    cs.store(name="replay_schema", node=ReplayApp)
    cs.store(name="study_schema", node=StudyApp)
    cs.store(name="report_schema", node=ReportApp)
    cs.store(name="validate_schema", node=ValidateApp)
    cs.store(name="loadgen_schema", node=LoadgenApp)
    for group, node in [
        ("model", ModelConf),
        ("gpu", GpuConf),
        ("design", DesignConf),
        ("trace", TraceConf),
        ("scheduler", SchedulerConf),
        ("serving", ServingConf),
        ("slo", SloConf),
        ("profiles", ProfilesConf),
        ("paths", PathsConf),
        ("search", SearchConf),
    ]:
        cs.store(group=f"schema/{group}", name="base", node=node)
    _REGISTERED = True


#: the Hydra config tree (experiments/conf/)
CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")
