"""From a composed Hydra config to plain, checked dataclasses (library code never sees omegaconf).

Types and key names are already checked by the structured configs (:mod:`experiments.config.schemas`).
The simulator's groups (design, trace, scheduler, slo) are built once, with
``OmegaConf.to_object``, into the library's own dataclasses, whose ``__post_init__`` checks each
value (the one place). This module checks only what belongs to the experiments layer (model,
profiles, search, study cross-references; the load generator's config). Every failure is an
:class:`ExperimentError` whose one-line message starts with the dotted config key.
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.config import schemas
from experiments.config.loadgen import ClientConf, LengthsConf, LoadgenConfig, TargetConf
from experiments.errors import ExperimentError

T = TypeVar("T")


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


def to_object(node: Any, key: str, cls: type[T] | None = None) -> T:
    """Build a group's library dataclass from its config node, once (``OmegaConf.to_object``).

    The dataclass checks its values; its one-line error names ``<group>.<field>``, re-keyed to
    ``key`` (e.g. ``designs.hh.``) when the node sits elsewhere in the config."""
    from characterize.modeling.specs import SpecError
    from replay.errors import ReplayError
    from traces.errors import TraceError

    try:
        if OmegaConf.is_config(node):
            obj = OmegaConf.to_object(node)
            if cls is not None and not isinstance(obj, cls):  # a plain dict node
                obj = cls(**obj)
        else:
            obj = cls(**node)
    except OmegaConfBaseException as e:
        cause = e.__cause__ or e.__context__
        if isinstance(cause, ReplayError | TraceError | SpecError):
            raise ExperimentError(_rekey(str(cause), key)) from None
        full = getattr(e, "full_key", None) or key
        raise ExperimentError(f"{full}: {str(e).splitlines()[0]}") from None
    except (ReplayError, TraceError, SpecError) as e:
        raise ExperimentError(_rekey(str(e), key)) from None
    except TypeError as e:
        raise ExperimentError(f"{key}: {str(e).splitlines()[0]}") from None
    return obj


def _rekey(msg: str, key: str) -> str:
    """'design.machines: ...' -> 'designs.hh.machines: ...' for a node at ``key``."""
    line = msg.splitlines()[0]
    group = line.split(".", 1)[0]
    if key != group and line.startswith(group + "."):
        return key + line[len(group) :]
    return line


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


def check_profiles(p: schemas.ProfilesConf, key: str = "profiles") -> None:
    from characterize.modeling.profiles import ProfileError, read_profile_source

    for field, src in (("source", p.source), ("slo_reference_source", p.slo_reference_source)):
        if (field == "source" and p.set == "aic") or src == "set":
            continue  # resolved by the study (characterize.modeling.profile_sets)
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


def _serving(cfg: DictConfig):
    """The serving component (group ``serving``: a ``replay.serving.ServingConfig``, checked;
    absent: every term zero)."""
    from replay.serving import ServingConfig

    if cfg.get("serving") is None:
        return ServingConfig()
    return to_object(to_plain(cfg.serving, "serving"), "serving", ServingConfig)


def replay_config(cfg: DictConfig) -> dict:
    """The replay app's config as checked dataclasses: model, design, trace, scheduler, slo..."""
    out = {
        "model": section(cfg, "model", schemas.ModelConf),
        "design": to_object(cfg.design, "design", schemas.DesignConf),
        "trace": to_object(cfg.trace, "trace", schemas.TraceConf),
        "scheduler": to_object(cfg.scheduler, "scheduler", schemas.SchedulerConf),
        "serving": _serving(cfg),
        "slo": to_object(cfg.slo, "slo", schemas.SloConf),
        "profiles": section(cfg, "profiles", schemas.ProfilesConf),
        "paths": section(cfg, "paths", schemas.PathsConf),
    }
    check_model(out["model"])
    check_profiles(out["profiles"])
    seed = cfg.seed
    _need(isinstance(seed, int) and seed >= 0, "seed", f"must be an integer >= 0, got {seed!r}")
    if out["design"].counts and None in out["design"].counts:
        k = "/".join(out["design"].count_keys)
        raise ExperimentError(f"design.{k}: a replay needs the number of nodes")
    return out


def study_config(cfg: DictConfig) -> dict:
    """The study app's config as checked dataclasses (designs and traces as dicts of them)."""
    out = {
        "model": section(cfg, "model", schemas.ModelConf),
        "scheduler": to_object(cfg.scheduler, "scheduler", schemas.SchedulerConf),
        "serving": _serving(cfg),
        "slo": to_object(cfg.slo, "slo", schemas.SloConf),
        "profiles": section(cfg, "profiles", schemas.ProfilesConf),
        "paths": section(cfg, "paths", schemas.PathsConf),
        "search": section(cfg, "search", schemas.SearchConf),
        "cache": section(cfg, "cache", schemas.CacheConf),
        "heatmap": section(cfg, "heatmap", schemas.HeatmapConf),
    }
    study = to_plain(cfg.study, "study")
    budgets = [
        build(schemas.BudgetConf, b, f"study.budgets[{i}]")
        for i, b in enumerate(study.pop("budgets"))
    ]
    variants = [
        build(schemas.VariantConf, v, f"study.variants[{i}]")
        for i, v in enumerate(study.pop("variants", []) or [])
    ]
    out["study"] = build(
        schemas.StudySpec, {**study, "budgets": budgets, "variants": variants}, "study"
    )
    out["designs"] = {
        k: to_object(v, f"designs.{k}", schemas.DesignConf) for k, v in cfg.designs.items()
    }
    out["traces"] = {
        k: to_object(v, f"traces.{k}", schemas.TraceConf) for k, v in cfg.traces.items()
    }
    check_model(out["model"])
    check_profiles(out["profiles"])
    check_search(out["search"])
    st = out["study"]
    for i, d in enumerate(st.designs):
        _one_of(d, tuple(out["designs"]), f"study.designs[{i}]")
    for i, d in enumerate(st.extra_designs):
        _one_of(d, tuple(out["designs"]), f"study.extra_designs[{i}]")
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
    names = [v.name for v in st.variants]
    for i, v in enumerate(st.variants):
        _need(v.name not in names[:i], f"study.variants[{i}].name", f"'{v.name}' is used twice")
    if st.variants or st.mismatch or st.load_factors or st.batch_overload:
        _one_of(st.variant_budget, tuple(b.name for b in st.budgets), "study.variant_budget")
    for i, f in enumerate(st.load_factors):
        _need(f > 0, f"study.load_factors[{i}]", f"must be > 0, got {f}")
    if st.batch_overload is not None:
        _need(st.batch_overload > 1, "study.batch_overload", "must be > 1 (a saturating rate)")
    _need(st.batch_configs >= 1, "study.batch_configs", "must be >= 1")
    if st.heatmap:
        h = out["heatmap"]
        _one_of(h.design, tuple(out["designs"]), "heatmap.design")
        _need(
            out["designs"][h.design].is_split,
            "heatmap.design",
            "the heatmap needs a Splitwise (two-pool) design",
        )
        _one_of(h.trace, tuple(out["traces"]), "heatmap.trace")
        _need(h.rate > 0, "heatmap.rate", "must be > 0")
        _need(h.prompt_max >= 1 and h.token_max >= 1, "heatmap.prompt_max", "must be >= 1")
    return out


def check_loadgen(cfg: DictConfig) -> tuple[TargetConf, LengthsConf, ClientConf]:
    """The load generator's own groups (target, lengths, client; trim, seed) as checked
    dataclasses, not the trace (a caller may compose it with a trace file still to be written)."""
    groups = (
        section(cfg, "target", TargetConf),
        section(cfg, "lengths", LengthsConf),
        section(cfg, "client", ClientConf),
    )
    _need(cfg.trim >= 0, "trim", f"must be >= 0, got {cfg.trim}")
    _need(cfg.trim < 0.5, "trim", f"must be < 0.5, got {cfg.trim}")
    _need(cfg.seed >= 0, "seed", f"must be >= 0, got {cfg.seed}")
    return groups


def loadgen_config(cfg: DictConfig) -> LoadgenConfig:
    """The load generator's config as checked dataclasses, the trace's included."""
    target, lengths, client = check_loadgen(cfg)
    record = to_plain(cfg, "")
    record.pop("hydra", None)
    return LoadgenConfig(
        trace=to_object(cfg.trace, "trace", schemas.TraceConf),
        target=target,
        lengths=lengths,
        client=client,
        trim=float(cfg.trim),
        seed=int(cfg.seed),
        display=None if cfg.display is None else str(cfg.display),
        record=record,
    )
