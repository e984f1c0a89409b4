"""Held-out error: leave-one-point-out refits of latency and power (FRACTIONS)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from characterize.modeling.phase.latency import _fit_form, _LatencyFit
from characterize.modeling.phase.power import _fit_power_curve

MIN_POINTS = 5
TARGET_MAPE = 0.05


def _held_out(
    phase: str,
    rows: pd.DataFrame,
    fit: _LatencyFit,
    mask: np.ndarray,
    floor: bool,
    kv_floor: float,
) -> np.ndarray:
    """Leave-one-point-out relative errors of the kept points (empty if < MIN_POINTS)."""
    kept = rows[fit.used]
    b = kept["batch_size"].to_numpy(dtype=float)
    t = kept["tokens_per_request"].to_numpy(dtype=float)
    y = kept["latency_s"].to_numpy(dtype=float)
    if len(y) < MIN_POINTS:
        return np.array([])
    err = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        form = _fit_form(phase, b[keep], t[keep], y[keep], mask, floor, kv_floor)
        err[i] = abs(float(form.predict(b[i : i + 1], t[i : i + 1])[0]) / y[i] - 1.0)
    return err


def _power_loo(x: np.ndarray, p: np.ndarray, cap: float) -> np.ndarray:
    err = np.full(len(p), np.nan)
    if len(p) < MIN_POINTS:
        return err
    for i in range(len(p)):
        keep = np.arange(len(p)) != i
        curve = _fit_power_curve(x[keep], p[keep], cap)
        err[i] = abs(curve(float(x[i])) / p[i] - 1.0)
    return err
