"""One simulated point: the full config as a plain dict, and its evaluation through the replay.

This is the only bridge from the experiments layer to ``traces`` and ``replay``; both are
imported lazily so that Hydra starts fast and nothing imports torch. A study's searches ask
for points through a :class:`PointEvaluator` (one task's fixed settings: the search varies
the machine counts and the rate); it builds the point, looks it up in (or adds it to) the
:class:`~experiments.cache.PointCache` and returns the point's result.

A *point* (:func:`make_point`) is a JSON-able dict holding everything that determines the
result: model, design with machine counts, trace with every transform and seed (the
request rate is ``trace.resample_rate``), scheduler, SLO, profile source (with a content
digest when it is a file), simulator seed and :func:`code_version`. The cache keys on it.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import os
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from experiments.config import schemas
from experiments.errors import ExperimentError

#: quantile levels kept per point for CDF figures (fractions)
QUANTILE_LEVELS = tuple(round(0.02 * i, 2) for i in range(50)) + (0.99, 0.995, 0.999, 1.0)

_ROOT = Path(__file__).resolve().parent.parent
#: what a point's result depends on: whole packages (every file, data included) and this module
#: (not the study's tables nor the report: a new column recomputes nothing)
_CODE_PACKAGES = ("common", "traces", "replay", "characterize/modeling")
_EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)  # compiled modules
_CORE_BUILD_RECORD = (
    "_core_build.json"  # replay/_core.py's BUILD_RECORD (not imported: no replay here)
)


@cache
def code_version() -> str:
    """Package version + digest of everything that can change a point: every file of the
    packages common/, traces/ (data included), replay/, characterize/modeling/ (specs and
    reference data included), and this module (summarize() shapes the cached results; the
    study's tables and the report are not hashed: they read results, they do not make them).
    A new or changed file anywhere in those packages invalidates cached points. Build outputs
    do not count: bytecode, and the compiled core's extensions and build record
    (replay/_core.py: it gives the same results as the source, byte for byte, and its bytes
    differ from compiler to compiler)."""
    h = hashlib.sha256()
    files = [p for pkg in _CODE_PACKAGES for p in (_ROOT / pkg).rglob("*")]
    files.append(Path(__file__).resolve())
    for p in sorted(set(files)):
        if not p.is_file() or "__pycache__" in p.parts or p.suffix in (".pyc", ".pyo"):
            continue
        if p.name == _CORE_BUILD_RECORD or p.name.endswith(_EXTENSION_SUFFIXES):
            continue
        h.update(p.relative_to(_ROOT).as_posix().encode())
        h.update(b"\0")
        h.update(p.read_bytes())
    try:
        from importlib.metadata import version

        v = version("splitbench")
    except Exception:  # noqa: BLE001 - not installed: source checkout
        v = "0"
    return f"splitbench-{v}+{h.hexdigest()[:12]}"


@cache
def _file_digest(path: str, mtime: float, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _source_identity(source: str, key: str) -> dict:
    if source == "reference":
        return {"source": "reference"}
    from characterize.modeling.profiles import ProfileError, find_profile_tables

    p = os.path.abspath(source)
    if not os.path.exists(p):
        raise ExperimentError(f"{key}: no such file or folder '{source}'")
    try:
        files = find_profile_tables(p)
    except ProfileError as e:
        raise ExperimentError(f"{key}: {str(e).splitlines()[0]}") from None
    digests = []
    for f in files:
        st = os.stat(f)
        digests.append(_file_digest(str(f), st.st_mtime, st.st_size))
    if os.path.isfile(p):
        return {"source": p, "sha256": digests[0]}
    tables = [os.path.relpath(f, p) for f in files]
    return {"source": p, "tables": tables, "sha256": digests}


def profiles_identity(profiles: schemas.ProfilesConf | str) -> dict:
    """The profile source as it enters a cache key: the name, or a path with its digest (a
    folder: every table under it with its digest), plus the slowdown reference (source, gpu,
    tp; a plain string keeps the default: the paper's DGX-A100 TP8)."""
    if isinstance(profiles, str):
        profiles = schemas.ProfilesConf(source=profiles)
    out = _source_identity(profiles.source, "profiles.source")
    ref = profiles.slo_reference_source
    out["slo_reference"] = {
        **(
            {"source": out["source"]}
            if ref == profiles.source
            else _source_identity(ref, "profiles.slo_reference_source")
        ),
        "gpu": profiles.slo_reference_gpu,
        "tp": int(profiles.slo_reference_tp),
    }
    adjust = profiles.adjust
    if not adjust.is_identity:  # the plain fit keeps the keys it had
        out["adjust"] = asdict(adjust)
    return out


def design_point(d: schemas.DesignConf, counts: tuple[int, ...] | None = None) -> dict:
    """The design part of a point; ``counts`` replaces the machine counts when given."""
    out = asdict(d if counts is None else d.with_counts(counts))
    out.pop("display", None)
    return out


def point_duration(rate: float, duration_s: float, max_requests: int | None) -> float:
    """Re-sampled trace length, s: ``duration_s``, shortened to ``max_requests / rate``."""
    d = float(duration_s)
    if max_requests:
        d = min(d, float(max_requests) / float(rate))
    return round(d, 1)


def trace_point(
    t: schemas.TraceConf,
    rate: float | None = None,
    duration_s: float | None = None,
    seed: int | None = None,
) -> dict:
    """The trace part of a point; ``rate`` turns on re-sampling at that rate for duration_s
    (``trace.rate_method: scale``: the whole trace, its time compressed to that mean rate)."""
    out = asdict(t)
    out.pop("display", None)
    if t.path is not None:
        st = os.stat(t.path)
        out["path"] = os.path.abspath(t.path)
        out["sha256"] = _file_digest(out["path"], st.st_mtime, st.st_size)
    if rate is not None and t.rate_method == "scale":  # the whole trace, re-timed to the rate
        out["scale_to_rate"] = float(rate)
    elif rate is not None:
        out["resample_rate"] = float(rate)
        if duration_s is not None:
            out["resample_duration_s"] = float(duration_s)
            out["resample_requests"] = None
    if seed is not None:
        out["seed"] = int(seed)
    return out


def make_point(
    *,
    model: schemas.ModelConf,
    design: dict,
    trace: dict,
    scheduler: schemas.SchedulerConf,
    slo: schemas.SloConf,
    profiles: dict,
    seed: int = 0,
    serving=None,
) -> dict:
    """The full config of one simulation as a plain dict (what the cache hashes). ``serving``:
    the serving component (``replay.serving.ServingConfig``), kept only where a term is set."""
    out = {
        "model": {"name": model.name, "tp": model.tp},
        "design": design,
        "trace": trace,
        "scheduler": asdict(scheduler),
        "slo": asdict(slo),
        "profiles": profiles,
        "seed": int(seed),
        "code_version": code_version(),
    }
    if serving is not None and not serving.is_zero:
        out["serving"] = asdict(serving)
    return out


# ---------------------------------------------------------------------------------------------
# Evaluation (imports traces / replay lazily)


def phase_models_of(profiles: dict):
    """The phase-model set a point's ``profiles`` (:func:`profiles_identity`) names, with its
    slowdown reference (absent: the paper's DGX-A100 TP8, ``model_set.REFERENCE_GPU/TP``)."""
    from characterize.modeling.phase.model_set import REFERENCE_GPU, REFERENCE_TP

    ref = profiles.get("slo_reference") or {}
    return _phase_models(
        profiles["source"],
        ref.get("source", "reference"),
        ref.get("gpu", REFERENCE_GPU),
        int(ref.get("tp", REFERENCE_TP)),
        tuple(sorted((profiles.get("adjust") or {}).items())),
    )


@cache
def _phase_models(source: str, reference: str, gpu: str, tp: int, adjust: tuple = ()):
    """The phase-model set of a point's profiles (``adjust``: PhaseAdjust fields as sorted
    (name, value) pairs; empty: the plain fit)."""
    from characterize.modeling.phase.adjust import PhaseAdjust
    from characterize.modeling.phase_model import load_phase_models

    return load_phase_models(
        source,
        reference=reference,
        reference_gpu=gpu,
        reference_tp=tp,
        adjust=PhaseAdjust(**dict(adjust)) if adjust else None,
    )


@cache
def _raw_trace(name_or_path: str, fmt: str | None):
    import traces

    return traces.load(name_or_path, fmt=fmt)


def prepare_trace(tr: dict, model_name: str):
    """The trace table of a point's trace dict (transforms applied, seeded); (df, info)."""
    from characterize.modeling.specs import load_model
    from traces.transforms import TraceConfig

    t = TraceConfig(**{k: v for k, v in tr.items() if k != "sha256"})
    raw = _raw_trace(t.source, t.fmt)
    return t.prepare(raw, max_context=load_model(model_name).max_context_tokens)


def build_design(model: dict, d: dict, kv_reserve_fraction: float):
    """replay Design from a point's design dict."""
    from replay.designs import DesignConfig, make_design

    return make_design(
        DesignConfig(**d), model["name"], tp=model["tp"], kv_reserve_fraction=kv_reserve_fraction
    )


def simulate_point(point: dict, progress: bool = False, display: dict | None = None):
    """Run the replay of one point; returns (ReplayResult, trace info)."""
    from replay.scheduler import SchedulerConfig
    from replay.serving import ServingConfig
    from replay.simulate import simulate
    from replay.slo import SLO

    df, info = prepare_trace(point["trace"], point["model"]["name"])
    sched = SchedulerConfig(**point["scheduler"])
    design = build_design(point["model"], point["design"], sched.kv_reserve_fraction)
    models = phase_models_of(point["profiles"])
    res = simulate(
        df,
        design,
        scheduler=sched,
        phase_models=models,
        seed=point["seed"],
        progress=progress,
        slo=SLO(**point["slo"]),
        trace_info=info,
        display=display,
        serving=ServingConfig(**point["serving"]) if point.get("serving") else None,
    )
    return res, info


def evaluate_point(point: dict) -> dict:
    """Simulate one point; a JSON-able result with ``slo_met`` and the figures' numbers."""
    res, info = simulate_point(point)
    return summarize(res, info, point)


def summarize(res, info: dict, point: dict) -> dict:
    """The cached result of a point, read from the replay's one summary (SLO verdict with the
    point's SLO, throughput, cost, power, context policy counts, latency quantiles; with prefix
    caching on, ``prefix_cache``: :data:`PREFIX_CACHE_KEYS` of the summary's block; where the
    phase model was queried beyond its measured range, ``extrapolated``: the notes)."""
    from common.jsonsafe import jsonable
    from replay.metrics import weighted_percentiles

    s = res.summary
    keys = [f"p{q:g}" for q in (s.slo or {}).get("percentiles", [])]
    slowdown = {
        f"{m}_{k}": ((s.slowdown or {}).get(m) or {}).get(k)
        for m in ("ttft", "tbt", "e2e")
        for k in keys
    }
    out = {
        "slo_met": s.slo_met,
        "slo_worst_ratio": s.slo_worst_ratio,
        "slowdown": slowdown,
        "throughput_rps": s.throughput_rps,
        "goodput_rps": s.goodput_rps,
        "energy_kwh": s.energy_kwh,
        "mean_power_w": s.mean_power_w,
        "preemptions": s.preemptions,
        "requests": s.requests,
        "cost_per_hour": s.cost_per_hour,
        "provisioned_power_w": s.provisioned_power_w,
        "trace_requests": int(info.get("requests", len(res.requests))),
        "ttft_s": dict(s.ttft_s),
        "tbt_s": dict(s.tbt_s),
        "e2e_s": dict(s.e2e_s),
        "context": dict(s.context),
    }
    reqs = res.requests
    done = reqs["e2e_s"].notna().to_numpy()
    qs = [100.0 * q for q in QUANTILE_LEVELS]
    series = {
        "ttft_s": (reqs["ttft_s"].to_numpy(dtype=float)[done], None),
        "e2e_s": (reqs["e2e_s"].to_numpy(dtype=float)[done], None),
        "tbt_s": res.tbt_gaps(),  # token-weighted: every gap (the summary's definition)
    }
    q = {}
    for key, (vals, w) in series.items():
        pct = weighted_percentiles(vals, w, qs)
        q[key] = [pct[f"p{x:g}"] for x in qs]
    out["quantiles"] = q
    # present only where the feature ran, so results of points without it keep their content
    pc = s.prefix_cache
    if pc is not None:
        out["prefix_cache"] = {k: pc.get(k) for k in PREFIX_CACHE_KEYS}
    if getattr(s, "extrapolated", None):
        out["extrapolated"] = list(s.extrapolated)
    return jsonable(out)


#: the prefix-cache figures a point result keeps (replay.summary.cache_summary's names)
PREFIX_CACHE_KEYS = (
    "block_hit_rate", "request_hit_rate", "saved_tokens", "saved_fraction",
    "prefill_prompt_tokens", "transfer_saved_tokens", "cache_aware_routing",
    "transfer_uncached_only", "ttft_s_hit", "ttft_s_miss",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# A search's points (the study's tasks ask through one of these)

#: the progress file's marks: one per point looked at (experiments.study.execute counts them)
MARK_SIMULATED, MARK_CACHED, MARK_FAILED = "s", "c", "e"


@dataclass
class PointEvaluator:
    """One search's points: everything but the machine counts and the rate is fixed (a task's
    model, design, trace, scheduler, SLO, serving, profiles and seeds). Calling it with
    ``(counts, rate)`` returns the point's result (from ``cache``, or simulated by ``fn`` and
    stored), with ``slo_met`` False for a failed point, its ``error`` and its cache ``_key``.
    ``progress_file``: one mark appended per point (:data:`MARK_SIMULATED`, ...)."""

    model: schemas.ModelConf
    design: schemas.DesignConf
    trace: schemas.TraceConf
    scheduler: schemas.SchedulerConf
    slo: schemas.SloConf
    serving: object  # replay.serving.ServingConfig or None
    profiles: dict  # profiles_identity(...)
    search: schemas.SearchConf  # duration_s, max_requests, seed
    seed: int | None  # variants: overrides search.seed (simulator) and the trace's seed
    cache: object  # experiments.cache.PointCache
    fn: object = None  # fn(point) -> result; None: evaluate_point (tests pass a cheap one)
    progress_file: str | None = None

    def point(self, counts, rate: float) -> dict:
        """The full config of the point at ``counts`` machines and ``rate`` req/s."""
        s = self.search
        return make_point(
            model=self.model,
            design=design_point(self.design, counts),
            trace=trace_point(
                self.trace,
                rate,
                point_duration(rate, s.duration_s, s.max_requests),
                seed=self.seed,
            ),
            scheduler=self.scheduler,
            slo=self.slo,
            serving=self.serving,
            profiles=self.profiles,
            seed=s.seed if self.seed is None else self.seed,
        )

    def __call__(self, counts, rate: float) -> dict:
        cache = self.cache
        hits = cache.stats.hits
        rec = cache.evaluate(self.point(counts, rate), self.fn or evaluate_point)
        res = dict(rec["result"] or {})
        res["slo_met"] = rec["status"] == "ok" and bool(res.get("slo_met"))
        if rec["status"] != "ok":
            res["error"] = rec["error"]
        if self.progress_file:
            failed = rec["status"] != "ok"
            mark = MARK_CACHED if cache.stats.hits > hits else (
                MARK_FAILED if failed else MARK_SIMULATED)  # fmt: skip
            note_progress(self.progress_file, mark)
        res["_key"] = rec["key"]
        return res


def note_progress(path: str, mark: str) -> None:
    """Append one mark to the progress file: one small O_APPEND write, whole even with several
    writers."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        return
    try:
        os.write(fd, mark.encode())
    finally:
        os.close(fd)
