"""Fit a :class:`PhaseModel` from a profile table: latency forms, power curves (or the fallback
shape), and the fit report with held-out errors."""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import cache

import numpy as np
import pandas as pd

from characterize.modeling.phase.errors import PhaseModelError
from characterize.modeling.phase.held_out import MIN_POINTS, TARGET_MAPE, _held_out, _power_loo
from characterize.modeling.phase.latency import (
    DECODE_TERMS,
    OUTLIER_RATIO,
    PREFILL_TERMS,
    _fit_latency,
    _in_sample_mape,
    _LatencyFit,
    _mask,
    _monotone_outliers,
    kv_read_floor_s,
)
from characterize.modeling.phase.model import PhaseModel
from characterize.modeling.phase.power import _fit_power_curve, _PowerCurve
from characterize.modeling.profiles import PHASES, gpu_power_facts, reference_profiles


def fit_phase_model(
    profiles: pd.DataFrame,
    model: str,
    gpu: str,
    tp: int,
    *,
    prefill_terms: Iterable[str] = PREFILL_TERMS,
    decode_terms: Iterable[str] = DECODE_TERMS,
    prefill_floor: bool = True,
    kv_floor: bool = True,
    outlier_ratio: float = OUTLIER_RATIO,
    power_fallback: pd.DataFrame | None = None,
    source: str = "",
) -> PhaseModel:
    """Fit the :class:`PhaseModel` of one (model, gpu, tp) from a profile table.

    ``prefill_terms`` / ``decode_terms`` pick the terms of the latency forms and
    ``prefill_floor`` the prefill floor (see the module docstring); ``kv_floor`` keeps the
    decode context coefficient at least :func:`kv_read_floor_s`; ``outlier_ratio`` the
    monotonicity-violation factor that excludes a point (named in the report). ``power_fallback``
    is the profile table whose A100 rows give the power shape where ``profiles`` has no power
    for this group (default: the bundled reference).
    """
    rows = profiles[
        (profiles["model"] == model) & (profiles["gpu"] == gpu) & (profiles["tp"] == int(tp))
    ]
    if rows.empty:
        keys = profiles[["model", "gpu", "tp"]].itertuples(index=False)
        have = sorted({(m, g, int(t)) for m, g, t in keys})
        listing = ", ".join(f"{m}/{g}/tp{t}" for m, g, t in have) or "none"
        raise PhaseModelError(f"no profile rows for {model}/{gpu}/tp{tp} (have: {listing})")
    masks = {
        "prefill": _mask(tuple(prefill_terms), PREFILL_TERMS, "prefill"),
        "decode": _mask(tuple(decode_terms), DECODE_TERMS, "decode"),
    }
    floors = {"prefill": bool(prefill_floor), "decode": False}
    kv_floors = {
        "prefill": 0.0,
        "decode": kv_read_floor_s(model, gpu, int(tp)) if kv_floor else 0.0,
    }
    budget_per_gpu, idle_per_gpu = gpu_power_facts(gpu)
    budget = budget_per_gpu * int(tp)
    fits: dict[str, _LatencyFit] = {}
    phase_rows: dict[str, pd.DataFrame] = {}
    power: dict[str, tuple[_PowerCurve, str, np.ndarray, np.ndarray]] = {}
    power_notes: dict[str, list[str]] = {p: [] for p in PHASES}
    for phase in PHASES:
        ph = rows[rows["phase"] == phase].reset_index(drop=True)
        if ph.empty:
            raise PhaseModelError(f"no {phase} rows for {model}/{gpu}/tp{tp}")
        phase_rows[phase] = ph
        fits[phase] = _fit_latency(
            phase, ph, masks[phase], floors[phase], outlier_ratio, kv_floors[phase]
        )
        kept = ph[fits[phase].used]
        bt = (kept["batch_size"] * kept["tokens_per_request"]).to_numpy(dtype=float)
        x_power = bt if phase == "prefill" else kept["batch_size"].to_numpy(dtype=float)
        pw = kept["power_w"].to_numpy(dtype=float)
        has = np.isfinite(pw) & (pw > 0)
        if has.sum() >= 2:
            xs, ps = x_power[has], pw[has]
            bs = kept["batch_size"].to_numpy(dtype=float)[has]
            ts = kept["tokens_per_request"].to_numpy(dtype=float)[has]
            drop = _monotone_outliers(bs, ts, ps, outlier_ratio)
            for i in drop:
                power_notes[phase].append(
                    f"power: excluded outlier batch {int(bs[i])} x {int(ts[i])} tokens "
                    f"({ps[i]:.4g} W: over {outlier_ratio:g}x below smaller points)"
                )
            ok = np.ones(len(ps), dtype=bool)
            ok[drop] = False
            xs, ps = xs[ok], ps[ok]
            power[phase] = (_fit_power_curve(xs, ps, budget), "measured", xs, ps)
    if len(power) < 2:
        _power_fallback(model, gpu, int(tp), budget, power, power_fallback)
    kept_p = phase_rows["prefill"][fits["prefill"].used]
    kept_d = phase_rows["decode"][fits["decode"].used]
    pf, df_ = fits["prefill"].form, fits["decode"].form

    def build_report() -> list[dict]:
        report = []
        for phase in PHASES:
            fit = fits[phase]
            err = _held_out(
                phase, phase_rows[phase], fit, masks[phase], floors[phase], kv_floors[phase]
            )
            curve, psource, xs, ps = power[phase]
            perr = _power_loo(xs, ps, budget)
            pok = perr[np.isfinite(perr)]
            notes = ([fit.note] if fit.note else []) + power_notes[phase]
            if len(err) == 0:
                notes.append(
                    f"only {int(fit.used.sum())} points (< {MIN_POINTS}): no held-out error"
                )
            elif err.mean() > TARGET_MAPE:
                notes.append(f"mape above the {TARGET_MAPE:.0%} target")
            report.append(
                dict(
                    model=model,
                    gpu=gpu,
                    tp=int(tp),
                    phase=phase,
                    kind="held-out (leave-one-point-out)",
                    points=int(fit.used.sum()),
                    mape=float(err.mean()) if len(err) else math.nan,
                    max_error=float(err.max()) if len(err) else math.nan,
                    fit_mape=_in_sample_mape(phase_rows[phase][fit.used], fit.form),
                    outliers=int((~fit.used).sum()),
                    power_source=psource,
                    power_points=int(len(ps)),
                    power_mape=float(pok.mean()) if len(pok) else math.nan,
                    power_max_error=float(pok.max()) if len(pok) else math.nan,
                    note="; ".join(notes),
                )
            )
        return report

    return PhaseModel(
        model=model,
        gpu=gpu,
        tp=int(tp),
        prefill_coef=tuple(pf.coef),  # type: ignore[arg-type]
        prefill_knee=pf.knee,
        prefill_floor=pf.floor,
        prefill_hinges=pf.hinges,
        decode_coef=tuple(df_.coef),  # type: ignore[arg-type]
        prefill_power_curve=power["prefill"][0],
        decode_power_curve=power["decode"][0],
        idle_power_w=idle_per_gpu * int(tp),
        max_prefill_tokens=int((kept_p["batch_size"] * kept_p["tokens_per_request"]).max()),
        max_decode_batch=int(kept_d["batch_size"].max()),
        max_decode_context=int((kept_d["batch_size"] * kept_d["tokens_per_request"]).max()),
        max_prompt_tokens=int(kept_p["tokens_per_request"].max()),
        max_request_context=int(kept_d["tokens_per_request"].max()),
        source=source,
        report_builder=build_report,
    )


def _power_fallback(
    model: str,
    gpu: str,
    tp: int,
    budget: float,
    power: dict,
    fallback: pd.DataFrame | None,
) -> None:
    """Fill missing phase power curves from the A100 reference shape scaled to ``budget``.

    The A100 rows of the same model and tp (else the same model, else any) are fitted as in
    :func:`fit_phase_model`; the curve is scaled by ``budget / A100 budget`` and clipped at
    ``budget``. No held-out error is claimed for a fallback curve.
    """
    ref = reference_profiles() if fallback is None else fallback
    a100 = ref[(ref["gpu"] == "a100-80gb") & ref["power_w"].notna() & (ref["power_w"] > 0)]
    cand = a100[(a100["model"] == model) & (a100["tp"] == tp)]
    if cand.empty:
        cand = a100[a100["model"] == model]
    if cand.empty:
        cand = a100
    if cand.empty:
        raise PhaseModelError(f"no power data for {model}/{gpu}/tp{tp} and no A100 fallback rows")
    m0, t0 = cand.sort_values(["model", "tp"]).iloc[0][["model", "tp"]]
    m0, t0 = str(m0), int(t0)
    if fallback is None:
        donor = _reference_a100_model(m0, t0)
    else:
        donor = fit_phase_model(fallback, m0, "a100-80gb", t0, power_fallback=fallback)
    a100_budget = gpu_power_facts("a100-80gb")[0] * t0
    curves = {"prefill": donor.prefill_power_curve, "decode": donor.decode_power_curve}
    for phase in PHASES:
        if phase in power:
            continue
        power[phase] = (
            curves[phase].scaled(budget / a100_budget, budget),
            f"fallback: {m0}/a100-80gb/tp{t0} shape scaled to {budget:.0f} W budget",
            np.array([]),
            np.array([]),
        )


@cache
def _reference_a100_model(model: str, tp: int) -> PhaseModel:
    return fit_phase_model(reference_profiles(), model, "a100-80gb", tp)
