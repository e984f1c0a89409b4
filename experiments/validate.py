"""From a composed Hydra config to plain, checked dataclasses (library code never sees omegaconf).

Types and key names are already checked by the structured configs (:mod:`experiments.schemas`);
this module checks what types cannot: counts >= 1 where needed, known spec and trace names,
ascending percentiles, ranges. Every failure is an :class:`ExperimentError` whose one-line
message starts with the dotted config key.
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments import schemas
from experiments.errors import ExperimentError

T = TypeVar("T")

POLICIES = ("jsq", "round-robin", "random")
ARRIVALS = ("poisson", "gamma")
CONTEXT_POLICIES = ("clip", "reject")


def to_plain(node: Any, key: str = "") -> Any:
    """Resolve interpolations and return plain Python containers (one-line error on failure)."""
    if not isinstance(node, DictConfig | list) and not OmegaConf.is_config(node):
        return node
    try:
        return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as e:
        full = getattr(e, "full_key", None) or key
        msg = str(e).splitlines()[0]
        raise ExperimentError(f"{full}: {msg}") from None


def build(cls: type[T], data: dict, key: str) -> T:
    """``cls(**data)`` for a schema dataclass, unknown keys rejected naming ``key.field``."""
    names = {f.name for f in fields(cls)}
    for k in data:
        if k not in names:
            raise ExperimentError(f"{key}.{k}: unknown key")
    return cls(**{k: v for k, v in data.items() if k in names})


def _need(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ExperimentError(f"{key}: {msg}")


def _one_of(value: Any, allowed: tuple, key: str) -> None:
    _need(value in allowed, key, f"unknown value '{value}' (known: {', '.join(allowed)})")


def _spec_names(kind: str) -> list[str]:
    from characterize.modeling.specs import list_specs

    return list_specs(kind)


def check_model(m: schemas.ModelConf, key: str = "model") -> None:
    models = _spec_names("models")
    _one_of(m.name, tuple(models), f"{key}.name")
    _need(m.tp >= 1, f"{key}.tp", f"must be >= 1, got {m.tp}")


def check_design(d: schemas.DesignConf, key: str = "design", counts: bool = True) -> None:
    """Kind, machine spec names, and (when ``counts``) machine counts >= 1."""
    machines = tuple(_spec_names("machines"))
    _one_of(d.kind, ("baseline", "splitwise"), f"{key}.kind")
    if d.kind == "baseline":
        _need(d.machine is not None, f"{key}.machine", "a baseline needs a machine spec")
        _one_of(d.machine, machines, f"{key}.machine")
        if counts:
            _need(d.machines is not None, f"{key}.machines", "a baseline needs machines=N")
            _need(d.machines >= 1, f"{key}.machines", f"must be >= 1, got {d.machines}")
        for k in ("prompt_machines", "token_machines", "prompt_machine", "token_machine"):
            _need(getattr(d, k) is None, f"{key}.{k}", "a baseline has no prompt/token pools")
    else:
        for k in ("prompt_machine", "token_machine"):
            _need(getattr(d, k) is not None, f"{key}.{k}", "a Splitwise design needs it")
            _one_of(getattr(d, k), machines, f"{key}.{k}")
        if counts:
            for k in ("prompt_machines", "token_machines"):
                v = getattr(d, k)
                _need(v is not None, f"{key}.{k}", "a Splitwise design needs it")
                _need(v >= 1, f"{key}.{k}", f"must be >= 1, got {v}")
        for k in ("machines", "machine"):
            _need(
                getattr(d, k) is None,
                f"{key}.{k}",
                "a Splitwise design has prompt/token pools (prompt_machine, token_machine)",
            )


def check_trace(t: schemas.TraceConf, key: str = "trace") -> None:
    if t.path is None:
        from traces import list_traces

        names = tuple(list_traces())
        _need(t.name is not None, f"{key}.name", "set a bundled trace name or trace.path")
        _one_of(t.name, names, f"{key}.name")
    else:
        _need(os.path.isfile(t.path), f"{key}.path", f"no such file '{t.path}'")
    for k in (
        "scale_to_rate",
        "resample_rate",
        "resample_duration_s",
        "resample_requests",
        "max_context",
    ):
        v = getattr(t, k)
        _need(v is None or v > 0, f"{key}.{k}", f"must be > 0, got {v}")
    for k in ("start_s", "end_s"):
        v = getattr(t, k)
        _need(v is None or v >= 0, f"{key}.{k}", f"must be >= 0, got {v}")
    if t.start_s is not None and t.end_s is not None:
        _need(t.end_s > t.start_s, f"{key}.end_s", "must be after start_s")
    _one_of(t.arrival, ARRIVALS, f"{key}.arrival")
    _need(t.cv > 0, f"{key}.cv", f"must be > 0, got {t.cv}")
    _one_of(t.context_policy, CONTEXT_POLICIES, f"{key}.context_policy")


def check_scheduler(s: schemas.SchedulerConf, key: str = "scheduler") -> None:
    _one_of(s.policy, POLICIES, f"{key}.policy")
    _need(s.prompt_batch_tokens >= 1, f"{key}.prompt_batch_tokens", "must be >= 1")
    _need(
        s.max_batch_size is None or s.max_batch_size >= 1, f"{key}.max_batch_size", "must be >= 1"
    )
    _need(0 <= s.kv_reserve_fraction < 1, f"{key}.kv_reserve_fraction", "must be in [0, 1)")
    _need(0 <= s.kv_watermark_fraction < 1, f"{key}.kv_watermark_fraction", "must be in [0, 1)")
    _need(s.max_preemptions >= 0, f"{key}.max_preemptions", "must be >= 0")
    _need(
        s.prompt_queue_threshold_tokens >= 1, f"{key}.prompt_queue_threshold_tokens", "must be >= 1"
    )
    _need(s.token_kv_threshold_fraction > 0, f"{key}.token_kv_threshold_fraction", "must be > 0")
    _need(
        s.kv_layerwise_threshold_tokens >= 0, f"{key}.kv_layerwise_threshold_tokens", "must be >= 0"
    )
    _need(s.kv_exposed_s is None or s.kv_exposed_s >= 0, f"{key}.kv_exposed_s", "must be >= 0")


def check_slo(s: schemas.SloConf, key: str = "slo") -> None:
    n = len(s.percentiles)
    _need(n >= 1, f"{key}.percentiles", "needs at least one percentile")
    _need(all(0 < p <= 100 for p in s.percentiles), f"{key}.percentiles", "must be in (0, 100]")
    _need(list(s.percentiles) == sorted(s.percentiles), f"{key}.percentiles", "must ascend")
    _need(
        set(s.percentiles) <= {50.0, 90.0, 99.0},
        f"{key}.percentiles",
        "replay.metrics reports P50, P90 and P99 only (the limits are configurable)",
    )
    for k in ("ttft", "tbt", "e2e"):
        v = getattr(s, k)
        _need(len(v) == n, f"{key}.{k}", f"needs {n} limits (one per percentile), got {len(v)}")
        _need(all(x >= 1 for x in v), f"{key}.{k}", "slowdown limits must be >= 1")


def check_profiles(p: schemas.ProfilesConf, key: str = "profiles") -> None:
    from characterize.modeling.profiles import ProfileError, read_profile_source

    for field, src in (("source", p.source), ("slo_reference_source", p.slo_reference_source)):
        _need(
            src == "reference" or os.path.exists(src),
            f"{key}.{field}",
            f"no such file or folder '{src}' (or 'reference')",
        )
        if src != "reference":  # a bad table fails here, not in every simulated point
            try:
                read_profile_source(src)
            except ProfileError as e:
                raise ExperimentError(f"{key}.{field}: {str(e).splitlines()[0]}") from None
    _need(p.slo_reference_tp >= 1, f"{key}.slo_reference_tp", "must be >= 1")


def check_search(s: schemas.SearchConf, key: str = "search") -> None:
    _one_of(s.mode, ("bisect", "grid"), f"{key}.mode")
    _one_of(s.frontier, ("exhaustive", "refine"), f"{key}.frontier")
    _need(0 < s.rate_min <= s.rate_max, f"{key}.rate_min", "need 0 < rate_min <= rate_max")
    _need(s.rate_step > 0, f"{key}.rate_step", "must be > 0")
    _need(s.rate_start > 0, f"{key}.rate_start", "must be > 0")
    _need(s.coarse_points >= 2, f"{key}.coarse_points", "must be >= 2")
    for lo, hi in (
        ("prompt_min", "prompt_max"),
        ("token_min", "token_max"),
        ("machines_min", "machines_max"),
    ):
        a, b = getattr(s, lo), getattr(s, hi)
        _need(a >= 1, f"{key}.{lo}", f"must be >= 1, got {a}")
        _need(b >= a, f"{key}.{hi}", f"must be >= {lo} ({a}), got {b}")
    _need(s.n_jobs >= 1, f"{key}.n_jobs", f"must be >= 1, got {s.n_jobs}")
    _need(s.duration_s > 0, f"{key}.duration_s", f"must be > 0, got {s.duration_s}")
    _need(s.max_requests is None or s.max_requests >= 1, f"{key}.max_requests", "must be >= 1")
    _need(
        s.rate_start_per_machine is None or s.rate_start_per_machine > 0,
        f"{key}.rate_start_per_machine",
        "must be > 0",
    )


def section(cfg: DictConfig, name: str, cls: type[T]) -> T:
    """One config group as its dataclass (resolved, plain)."""
    return build(cls, to_plain(cfg[name], name), name)


def replay_config(cfg: DictConfig) -> dict:
    """The replay app's config as checked dataclasses: model, design, trace, scheduler, slo..."""
    out = {
        "model": section(cfg, "model", schemas.ModelConf),
        "design": section(cfg, "design", schemas.DesignConf),
        "trace": section(cfg, "trace", schemas.TraceConf),
        "scheduler": section(cfg, "scheduler", schemas.SchedulerConf),
        "slo": section(cfg, "slo", schemas.SloConf),
        "profiles": section(cfg, "profiles", schemas.ProfilesConf),
        "paths": section(cfg, "paths", schemas.PathsConf),
    }
    check_model(out["model"])
    check_design(out["design"])
    check_trace(out["trace"])
    check_scheduler(out["scheduler"])
    check_slo(out["slo"])
    check_profiles(out["profiles"])
    return out


def study_config(cfg: DictConfig) -> dict:
    """The study app's config as checked dataclasses (designs and traces as dicts of them)."""
    out = {
        "model": section(cfg, "model", schemas.ModelConf),
        "scheduler": section(cfg, "scheduler", schemas.SchedulerConf),
        "slo": section(cfg, "slo", schemas.SloConf),
        "profiles": section(cfg, "profiles", schemas.ProfilesConf),
        "paths": section(cfg, "paths", schemas.PathsConf),
        "search": section(cfg, "search", schemas.SearchConf),
        "cache": section(cfg, "cache", schemas.CacheConf),
        "heatmap": section(cfg, "heatmap", schemas.HeatmapConf),
    }
    designs = to_plain(cfg.designs, "designs")
    traces = to_plain(cfg.traces, "traces")
    study = to_plain(cfg.study, "study")
    budgets = [
        build(schemas.BudgetConf, b, f"study.budgets[{i}]")
        for i, b in enumerate(study.pop("budgets"))
    ]
    out["study"] = build(schemas.StudySpec, {**study, "budgets": budgets}, "study")
    out["designs"] = {k: build(schemas.DesignConf, v, f"designs.{k}") for k, v in designs.items()}
    out["traces"] = {k: build(schemas.TraceConf, v, f"traces.{k}") for k, v in traces.items()}
    check_model(out["model"])
    check_scheduler(out["scheduler"])
    check_slo(out["slo"])
    check_profiles(out["profiles"])
    check_search(out["search"])
    st = out["study"]
    for i, d in enumerate(st.designs):
        _one_of(d, tuple(out["designs"]), f"study.designs[{i}]")
    for i, d in enumerate(st.h200_designs):
        _one_of(d, tuple(out["designs"]), f"study.h200_designs[{i}]")
    for i, t in enumerate(st.traces):
        _one_of(t, tuple(out["traces"]), f"study.traces[{i}]")
    for k in st.iso_throughput_rates:
        _one_of(k, tuple(out["traces"]), f"study.iso_throughput_rates.{k}")
        r = st.iso_throughput_rates[k]
        _need(r > 0, f"study.iso_throughput_rates.{k}", f"must be > 0, got {r}")
    machines = tuple(_spec_names("machines"))
    for i, b in enumerate(st.budgets):
        _one_of(b.reference_machine, machines, f"study.budgets[{i}].reference_machine")
        _need(b.reference_count >= 1, f"study.budgets[{i}].reference_count", "must be >= 1")
        _need(b.power or b.cost, f"study.budgets[{i}]", "limit power, cost or both")
    for k in {*st.designs, *st.h200_designs}:
        check_design(out["designs"][k], f"designs.{k}", counts=False)
    for k in st.traces:
        check_trace(out["traces"][k], f"traces.{k}")
    if st.heatmap:
        h = out["heatmap"]
        _one_of(h.design, tuple(out["designs"]), "heatmap.design")
        _need(
            out["designs"][h.design].kind == "splitwise",
            "heatmap.design",
            "the heatmap needs a Splitwise (two-pool) design",
        )
        _one_of(h.trace, tuple(out["traces"]), "heatmap.trace")
        _need(h.rate > 0, "heatmap.rate", "must be > 0")
        _need(h.prompt_max >= 1 and h.token_max >= 1, "heatmap.prompt_max", "must be >= 1")
    return out
