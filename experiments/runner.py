"""One simulated point: the full config as a plain dict, and its evaluation through the replay.

This is the only bridge from the experiments layer to ``traces`` and ``replay``; both are
imported lazily so that Hydra starts fast and nothing imports torch.

A *point* (:func:`make_point`) is a JSON-able dict holding everything that determines the
result: model, design with machine counts, trace with every transform and seed (the
request rate is ``trace.resample_rate``), scheduler, SLO, profile source (with a content
digest when it is a file), simulator seed and :func:`code_version`. The cache keys on it.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Any

from experiments import schemas
from experiments.errors import ExperimentError

#: quantile levels kept per point for CDF figures (fractions)
QUANTILE_LEVELS = tuple(round(0.02 * i, 2) for i in range(50)) + (0.99, 0.995, 0.999, 1.0)

_ROOT = Path(__file__).resolve().parent.parent
#: what a replay's result depends on: (folder, glob) pairs under the project root
_CODE_INPUTS = (
    ("replay", "**/*.py"),
    ("traces", "*.py"),
    ("traces/data", "**/*"),
    ("common", "*.py"),
    ("characterize/modeling", "**/*"),
)
#: modules of those folders that cannot change a replay (command lines, plots, stats)
_CODE_SKIP = {"traces/cli.py", "traces/__main__.py", "traces/plots.py", "traces/stats.py"}


@cache
def code_version() -> str:
    """Package version + digest of the simulator's inputs: replay/ sources, the trace layer's
    loaders, transforms and bundled data, characterize's torch-free modules, specs and data,
    and this module (so a change there invalidates cached points; the measuring code, the
    command lines and the experiments layer's other modules do not)."""
    h = hashlib.sha256()
    for folder, pattern in _CODE_INPUTS:
        for p in sorted((_ROOT / folder).glob(pattern)):
            rel = p.relative_to(_ROOT).as_posix()
            if not p.is_file() or "__pycache__" in p.parts or rel in _CODE_SKIP:
                continue
            h.update(rel.encode())
            h.update(p.read_bytes())
    this = Path(__file__).resolve()  # summarize() shapes the cached results
    h.update(this.name.encode())
    h.update(this.read_bytes())
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
    return out


def design_point(d: schemas.DesignConf, counts: tuple[int, ...] | None = None) -> dict:
    """The design part of a point; ``counts`` replaces the machine counts when given."""
    out = asdict(d)
    out.pop("display", None)
    if counts is not None:
        if d.kind == "baseline":
            (out["machines"],) = counts
        else:
            out["prompt_machines"], out["token_machines"] = counts
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
    """The trace part of a point; ``rate`` turns on re-sampling at that rate for duration_s."""
    out = asdict(t)
    out.pop("display", None)
    if t.path is not None:
        st = os.stat(t.path)
        out["path"] = os.path.abspath(t.path)
        out["sha256"] = _file_digest(out["path"], st.st_mtime, st.st_size)
    if rate is not None:
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
) -> dict:
    """The full config of one simulation as a plain dict (what the cache hashes)."""
    sched = asdict(scheduler)
    sched.pop("name", None)
    s = asdict(slo)
    s.pop("name", None)
    return {
        "model": {"name": model.name, "tp": model.tp},
        "design": design,
        "trace": trace,
        "scheduler": sched,
        "slo": s,
        "profiles": profiles,
        "seed": int(seed),
        "code_version": code_version(),
    }


# ---------------------------------------------------------------------------------------------
# Evaluation (imports traces / replay lazily)


@cache
def _phase_models(source: str, reference: str = "reference", gpu: str = "a100-80gb", tp: int = 8):
    from characterize.modeling.phase_model import load_phase_models

    return load_phase_models(source, reference=reference, reference_gpu=gpu, reference_tp=tp)


@cache
def _raw_trace(name_or_path: str, fmt: str | None):
    import traces

    return traces.load(name_or_path, fmt=fmt)


def prepare_trace(tr: dict, model_name: str):
    """The trace table of a point's trace dict (transforms applied, seeded); (df, info)."""
    from characterize.modeling.specs import load_model
    from traces.transforms import prepare

    src = tr.get("path") or tr.get("name")
    if not src:
        raise ExperimentError("trace.name: set a bundled trace name or trace.path")
    max_ctx = tr.get("max_context") or load_model(model_name).max_context_tokens
    return prepare(
        _raw_trace(src, tr.get("fmt")),
        start_s=tr.get("start_s"),
        end_s=tr.get("end_s"),
        scale_to_rate=tr.get("scale_to_rate"),
        resample_rate=tr.get("resample_rate"),
        resample_duration_s=tr.get("resample_duration_s"),
        resample_requests=tr.get("resample_requests"),
        arrival=tr.get("arrival", "poisson"),
        cv=tr.get("cv", 1.0),
        max_context=max_ctx,
        context_policy=tr.get("context_policy", "clip"),
        seed=int(tr.get("seed", 0)),
    )


def build_design(model: dict, d: dict, kv_reserve_fraction: float):
    """replay Design from a point's design dict."""
    from replay.designs import DESIGNS, make_design

    if d["kind"] == "baseline":
        name = (
            d["name"]
            if d["name"] in DESIGNS and DESIGNS[d["name"]][0] == "baseline"
            else ("baseline")
        )
        return make_design(
            name,
            model["name"],
            machines=d["machines"],
            machine_spec=d["machine"],
            tp=model["tp"],
            kv_reserve_fraction=kv_reserve_fraction,
        )
    name = d["name"] if d["name"] in DESIGNS and DESIGNS[d["name"]][0] == "split" else "splitwise"
    return make_design(
        name,
        model["name"],
        prompt_machines=d["prompt_machines"],
        token_machines=d["token_machines"],
        prompt_spec=d["prompt_machine"],
        token_spec=d["token_machine"],
        tp=model["tp"],
        kv_reserve_fraction=kv_reserve_fraction,
    )


def build_scheduler(s: dict, mixed_pool: bool):
    """replay SchedulerConfig and KVTransferConfig from a point's scheduler dict."""
    from replay.engine import SchedulerConfig
    from replay.kv_transfer import KVTransferConfig

    sched = SchedulerConfig(
        policy=s["policy"],
        prompt_batch_tokens=s["prompt_batch_tokens"],
        max_batch_size=s["max_batch_size"],
        kv_watermark_fraction=s["kv_watermark_fraction"],
        max_preemptions=s["max_preemptions"],
        mixed_pool=bool(mixed_pool),
        prompt_queue_threshold_tokens=s["prompt_queue_threshold_tokens"],
        token_kv_threshold_fraction=s["token_kv_threshold_fraction"],
        enforce_max_context=s["enforce_max_context"],
        mixed_batch=s["mixed_batch"],
    )
    kv = KVTransferConfig(
        layerwise_threshold_tokens=s["kv_layerwise_threshold_tokens"],
        exposed_s=s["kv_exposed_s"],
        enabled=s["kv_transfer"],
    )
    return sched, kv


def simulate_point(point: dict, progress: bool = False):
    """Run the replay of one point; returns (ReplayResult, trace info)."""
    from replay.simulate import simulate

    df, info = prepare_trace(point["trace"], point["model"]["name"])
    design = build_design(
        point["model"], point["design"], point["scheduler"]["kv_reserve_fraction"]
    )
    sched, kv = build_scheduler(point["scheduler"], point["design"].get("mixed_pool", True))
    prof = point["profiles"]
    ref = prof.get("slo_reference") or {}
    models = _phase_models(
        prof["source"],
        ref.get("source", "reference"),
        ref.get("gpu", "a100-80gb"),
        int(ref.get("tp", 8)),
    )
    res = simulate(
        df,
        design,
        scheduler=sched,
        kv_transfer=kv,
        phase_models=models,
        seed=point["seed"],
        progress=progress,
    )
    return res, info


def slo_check(summary: dict, slo: dict) -> dict:
    """Slowdown percentiles of TTFT, TBT (token-weighted) and E2E against ``slo``'s limits.

    Reads the replay summary's ``slowdown`` (replay.metrics: the one definition; its
    percentiles are P50/P90/P99). Returns ``{"slo_met", "slo_worst_ratio" (max observed /
    limit; > 1 means missed), "slowdown": {"ttft_p50": ...}}``. No completed request: not met.
    """
    from replay.metrics import slo_attainment

    att = slo_attainment(
        summary.get("slowdown") or {},
        (summary.get("requests") or {}).get("completed", 0),
        {m: slo[m] for m in ("ttft", "tbt", "e2e")},
        slo["percentiles"],
    )
    worst = att["worst_ratio"]
    out: dict[str, Any] = {
        "slowdown": {
            k: c["slowdown"] if math.isfinite(c["slowdown"]) else None
            for k, c in att["checks"].items()
        },
        "slo_worst_ratio": worst if math.isfinite(worst) else None,
        "slo_met": att["met"],
    }
    return out


def evaluate_point(point: dict) -> dict:
    """Simulate one point; a JSON-able result with ``slo_met`` and the figures' numbers."""
    res, info = simulate_point(point)
    return summarize(res, info, point)


def summarize(res, info: dict, point: dict) -> dict:
    """The cached result of a point: SLO check, throughput, cost, power, latency quantiles."""
    import numpy as np

    from replay.metrics import weighted_percentiles

    s = res.summary
    out = slo_check(s, point["slo"])
    for k in ("throughput_rps", "goodput_rps", "energy_kwh", "mean_power_w", "preemptions"):
        if k in s:
            out[k] = s[k]
    out["requests"] = s.get("requests")
    d = s.get("design") or {}
    out["cost_per_hour"] = d.get("cost_per_hour")
    out["provisioned_power_w"] = d.get("provisioned_power_w")
    out["trace_requests"] = int(info.get("requests", len(res.requests)))
    for key in ("ttft_s", "tbt_s", "e2e_s"):
        out[key] = {k: v for k, v in (s.get(key) or {}).items()}
    reqs = res.requests
    done = reqs["e2e_s"].notna().to_numpy()
    qs = [100.0 * q for q in QUANTILE_LEVELS]
    gaps = res.tbt_gaps() if hasattr(res, "tbt_gaps") else None
    series = {
        "ttft_s": (reqs["ttft_s"].to_numpy(dtype=float)[done], None),
        "e2e_s": (reqs["e2e_s"].to_numpy(dtype=float)[done], None),
        "tbt_s": gaps
        if gaps is not None
        else (
            reqs["tbt_mean_s"].to_numpy(dtype=float)[done],
            np.maximum(reqs["output_tokens"].to_numpy(dtype=float)[done] - 1, 0),
        ),
    }
    q = {}
    for key, (vals, w) in series.items():
        pct = weighted_percentiles(vals, w, qs)
        q[key] = [pct[f"p{x}"] if math.isfinite(pct[f"p{x}"]) else None for x in qs]
    out["quantiles"] = q
    return out
