"""Structured configs of the experiment apps: one dataclass per config group.

Every group of ``experiments/conf/`` is validated by the dataclass registered here in Hydra's
ConfigStore, so a misspelt key or a wrongly typed value fails at composition, naming the key,
before anything runs. Each field carries its meaning and unit as ``metadata["help"]``.
Semantic checks that types cannot express (negative counts, unknown trace names, lists that
must be ascending) live in :mod:`experiments.validate`.

Machine, model and GPU facts are NOT repeated here: configs name specs
(``characterize/modeling/specs``) and the code reads the numbers from there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


def _f(default: Any, help: str) -> Any:  # noqa: A002 - "help" is the documented name
    """A dataclass field with a default and its help text."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConf:
    name: str = _f(
        MISSING, "model spec name in characterize/modeling/specs/models (e.g. llama2-70b)"
    )
    display: str = _f("", "name shown in tables and figures (the spec's display_name when empty)")
    tp: int = _f(8, "tensor-parallel degree of one instance (one instance per 8-GPU machine)")


@dataclass
class GpuConf:
    name: str = _f(MISSING, "short GPU name used in labels (a100, h100, h100-cap, h200)")
    machine: str = _f(
        MISSING, "machine spec name in characterize/modeling/specs/machines (dgx-h100, ...)"
    )
    display: str = _f("", "name shown in tables and figures")


@dataclass
class DesignConf:
    name: str = _f(MISSING, "design name understood by replay.designs.make_design")
    display: str = _f("", "name shown in tables and figures (e.g. Splitwise-HH)")
    kind: str = _f(MISSING, "'baseline' (every machine runs both phases) or 'splitwise'")
    machine: str | None = _f(None, "baseline: machine spec name of every machine")
    prompt_machine: str | None = _f(None, "splitwise: machine spec name of the prompt pool")
    token_machine: str | None = _f(None, "splitwise: machine spec name of the token pool")
    machines: int | None = _f(None, "baseline: number of machines (>= 1)")
    prompt_machines: int | None = _f(None, "splitwise: machines in the prompt pool (>= 1)")
    token_machines: int | None = _f(None, "splitwise: machines in the token pool (>= 1)")
    mixed_pool: bool = _f(True, "splitwise: let machines move through the mixed pool under load")


@dataclass
class TraceConf:
    name: str | None = _f(None, "bundled trace name (azure-code-2023, azure-conv-2023)")
    path: str | None = _f(None, "trace file path (CSV/parquet, contract 1 or Azure format); wins")
    fmt: str | None = _f(None, "file format of `path` when its suffix does not tell")
    display: str = _f("", "name shown in tables and figures")
    start_s: float | None = _f(None, "window start, s from trace start (None: from the start)")
    end_s: float | None = _f(None, "window end, s from trace start (None: to the end)")
    scale_to_rate: float | None = _f(None, "compress/stretch arrival times to this rate, req/s")
    resample_rate: float | None = _f(None, "re-sample arrivals at this rate, req/s (paper method)")
    resample_duration_s: float | None = _f(None, "re-sampled trace length, s")
    resample_requests: int | None = _f(None, "re-sampled trace length in requests (or duration)")
    arrival: str = _f("poisson", "re-sampled arrival process: 'poisson' or 'gamma'")
    cv: float = _f(1.0, "coefficient of variation of gamma inter-arrivals (1 = Poisson)")
    max_context: int | None = _f(None, "prompt+output token limit (None: the model's context)")
    context_policy: str = _f("clip", "requests over max_context: 'clip' or 'reject' (dropped)")
    seed: int = _f(0, "seed of every random transform")


@dataclass
class SchedulerConf:
    """Mirrors replay.SchedulerConfig / replay.kv_transfer.KVTransferConfig (their owner's names)."""

    name: str = _f("jsq", "display name of this scheduler setting")
    policy: str = _f("jsq", "cluster-level machine choice: 'jsq', 'round-robin' or 'random'")
    prompt_batch_tokens: int = _f(2048, "prompt machines: max tokens in one prefill batch")
    max_batch_size: int | None = _f(None, "decode batch cap (None: only KV memory limits it)")
    kv_reserve_fraction: float = _f(0.1, "GPU memory kept free of KV cache (activations, ...)")
    kv_watermark_fraction: float = _f(0.02, "free KV kept at admission, fraction of capacity")
    max_preemptions: int = _f(3, "cap on preemptions of one request")
    prompt_queue_threshold_tokens: int = _f(
        8192, "pending prompt tokens on the chosen prompt machine that trigger the mixed pool"
    )
    token_kv_threshold_fraction: float = _f(
        0.9, "token machine KV fill (of capacity) that triggers the mixed pool"
    )
    enforce_max_context: bool = _f(True, "reject requests longer than the model's context")
    mixed_batch: str = _f(
        "fused",
        "mixed iteration time: 'fused' (one pass: the decode tokens are more prefill tokens, "
        "plus their attention) or 'sequential' (prefill then a whole decode step: an upper bound)",
    )
    kv_layerwise_threshold_tokens: int = _f(
        512, "prompts at least this long transfer KV layer-wise (overlapped with the prompt)"
    )
    kv_exposed_s: float | None = _f(
        None, "exposed KV transfer time, s (None: the sending machine spec's value)"
    )
    kv_transfer: bool = _f(True, "False: KV transfers are free and instant (ideal interconnect)")


@dataclass
class SloConf:
    name: str = _f("paper", "display name of this SLO")
    percentiles: list[float] = _f([50.0, 90.0, 99.0], "percentiles the limits apply to")
    ttft: list[float] = _f([2.0, 3.0, 6.0], "TTFT slowdown limit at each percentile")
    tbt: list[float] = _f([1.25, 1.5, 5.0], "TBT slowdown limit at each percentile")
    e2e: list[float] = _f([1.25, 1.5, 5.0], "E2E slowdown limit at each percentile")


@dataclass
class ProfilesConf:
    source: str = _f("reference", "'reference' (paper DGX data) or a profile CSV path")
    display: str = _f("", "name shown in the report")
    measured_dir: str = _f(
        "${paths.root}/results/profiles",
        "folder of measured profiles; H200 designs run only when it has H200 rows",
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
class StudySpec:
    name: str = _f("paper-default", "study name: its folder under paths.study_dir")
    description: str = _f("", "one line shown in the report")
    designs: list[str] = _f([], "keys of `designs` compared")
    traces: list[str] = _f([], "keys of `traces` used")
    budgets: list[BudgetConf] = _f([], "iso-power / iso-cost budgets")
    iso_throughput_rates: dict[str, float] = _f(
        {}, "trace key -> target rate (req/s): cost and power each design needs"
    )
    h200_designs: list[str] = _f([], "designs run only when measured H200 profiles exist")
    heatmap: bool = _f(False, "compute the provisioning heatmap (grid over machine counts)")
    report: bool = _f(True, "write the report when the study finishes")


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
    design: DesignConf = field(default_factory=DesignConf)
    trace: TraceConf = field(default_factory=TraceConf)
    scheduler: SchedulerConf = field(default_factory=SchedulerConf)
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
    for group, node in [
        ("model", ModelConf),
        ("gpu", GpuConf),
        ("design", DesignConf),
        ("trace", TraceConf),
        ("scheduler", SchedulerConf),
        ("slo", SloConf),
        ("profiles", ProfilesConf),
        ("paths", PathsConf),
        ("search", SearchConf),
    ]:
        cs.store(group=f"schema/{group}", name="base", node=node)
    _REGISTERED = True


CONF_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf")
