"""Calibration of a (harness) PhaseModel to another engine from a few of its points."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from characterize.modeling.phase.errors import PhaseModelError
from characterize.modeling.phase.model import PhaseModel
from characterize.modeling.phase.numerics import _fit_relative
from characterize.modeling.profiles import PHASES, validate_profiles


def calibrate(
    model: PhaseModel,
    engine_points: pd.DataFrame,
    *,
    fit_points: int = 3,
    source: str = "engine",
) -> PhaseModel:
    """Calibrate a (harness) PhaseModel to another engine: ``t_engine = a * t_model + b``.

    Per phase, ``a >= 0`` (scale) and ``b >= 0`` (per-iteration overhead, s) are fitted in
    relative error on ``fit_points`` of that engine's rows for this (model, gpu, tp), spread
    over the range (sorted by the model's prediction, evenly spaced including the smallest and
    largest); the calibrated error is reported on the engine's OTHER rows. A phase with fewer
    than 2 engine rows stays as it is (noted). Power is unchanged. Returns a new PhaseModel;
    its ``fit_report`` gains rows with ``kind`` = 'calibration' (``points`` = rows checked,
    ``scale``, ``overhead_s``, ``fit_points``).
    """
    pts = validate_profiles(engine_points, f"calibration points ({source})")
    pts = pts[(pts["model"] == model.model) & (pts["gpu"] == model.gpu) & (pts["tp"] == model.tp)]
    if pts.empty:
        raise PhaseModelError(
            f"calibration points ({source}) have no rows for {model.model}/{model.gpu}/tp{model.tp}"
        )
    if fit_points < 2:
        raise PhaseModelError(f"calibrate: fit_points must be >= 2 (got {fit_points})")
    scales = {"prefill": (1.0, 0.0), "decode": (1.0, 0.0)}
    rows = []
    for phase in PHASES:
        ph = pts[pts["phase"] == phase]
        b = ph["batch_size"].to_numpy(dtype=float)
        t = ph["tokens_per_request"].to_numpy(dtype=float)
        if phase == "prefill":
            pred = np.array(
                [model._prefill_raw(n, n * x, n * x * x) for n, x in zip(b, t, strict=True)]
            )
        else:
            pred = np.array([model._decode_raw(n, n * x) for n, x in zip(b, t, strict=True)])
        y = ph["latency_s"].to_numpy(dtype=float)
        base = dict(model=model.model, gpu=model.gpu, tp=model.tp, phase=phase, kind="calibration")
        if len(y) < 2:
            rows.append({**base, "points": 0, "mape": math.nan, "max_error": math.nan,
                         "note": f"{len(y)} {source} points: not calibrated"})  # fmt: skip
            continue
        order = np.argsort(pred, kind="stable")
        k = min(fit_points, len(y))
        chosen = order[np.unique(np.round(np.linspace(0, len(y) - 1, k)).astype(int))]
        coef = _fit_relative(np.column_stack([pred[chosen], np.ones(len(chosen))]), y[chosen])
        a, off = float(coef[0]), float(coef[1])
        scales[phase] = (a, off)
        rest = np.setdiff1d(np.arange(len(y)), chosen)
        err = np.abs((a * pred[rest] + off) / y[rest] - 1.0)
        rows.append(
            {
                **base,
                "points": int(len(rest)),
                "mape": float(err.mean()) if len(err) else math.nan,
                "max_error": float(err.max()) if len(err) else math.nan,
                "scale": a,
                "overhead_s": off,
                "fit_points": int(len(chosen)),
                "note": f"t = {a:.4g} x t_model + {off * 1e3:.4g} ms, fitted on {len(chosen)} "
                f"{source} points, error on the other {len(rest)}",
            }
        )
    (pa, pb), (da, db) = scales["prefill"], scales["decode"]
    c = model.prefill_coef
    d = model.decode_coef
    parent = model
    return replace(
        model,
        prefill_coef=(c[0] * pa + pb, c[1] * pa, c[2] * pa, c[3] * pa, c[4] * pa),
        prefill_floor=model.prefill_floor * pa + pb,
        prefill_hinges=tuple((k, h * pa) for k, h in model.prefill_hinges),
        decode_coef=(d[0] * da + db, d[1] * da, d[2] * da, d[3] * da),
        source=f"{model.source} calibrated to {source}".strip(),
        calibration={"source": source, "prefill": scales["prefill"], "decode": scales["decode"]},
        report_builder=lambda: [*parent.fit_report(), *rows],
    )
