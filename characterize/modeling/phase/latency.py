"""Latency forms of prefill and decode and their fits (see :mod:`characterize.modeling.phase_model`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from characterize.modeling.phase.errors import PhaseModelError
from characterize.modeling.phase.numerics import _fit_relative, _floor_value, nnls
from characterize.modeling.profiles import profile_gpu_spec
from characterize.modeling.specs import load_model

OUTLIER_RATIO = 1.5
PREFILL_TERMS = ("const", "requests", "tokens", "tokens_sq", "tokens_hinge")
PREFILL_SMOOTHING = (0.001, 0.003, 0.01, 0.03, 0.1)
MAX_PREFILL_KNOTS = 8
DECODE_TERMS = ("const", "batch", "context", "batch_sq")


def _prefill_features(
    n: np.ndarray, tokens: np.ndarray, tokens_sq: np.ndarray, knee: float
) -> np.ndarray:
    hinge = np.maximum(0.0, tokens - knee)
    return np.column_stack([np.ones_like(tokens), n, tokens, tokens_sq, hinge])


def _hinge_sum(tokens: np.ndarray, hinges: Sequence[tuple[float, float]]) -> np.ndarray:
    out = np.zeros_like(tokens, dtype=float)
    for knee, slope in hinges:
        out += slope * np.maximum(0.0, tokens - knee)
    return out


def _decode_features(batch: np.ndarray, context: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones_like(batch), batch, context, batch * batch])


def _mask(terms: Sequence[str], allowed: Sequence[str], phase: str) -> np.ndarray:
    unknown = [t for t in terms if t not in allowed]
    if unknown:
        raise PhaseModelError(f"unknown {phase} term '{unknown[0]}' (known: {', '.join(allowed)})")
    return np.array([t in terms for t in allowed], dtype=bool)


@dataclass(frozen=True)
class _LatencyForm:
    """Fitted latency form: max(floor, features(knee) @ coef + sum_j h_j * max(0, T - k_j))
    (``hinges`` = ((k_j, h_j), ...), prefill only)."""

    phase: str
    coef: tuple[float, ...]
    knee: float = 0.0
    floor: float = 0.0
    hinges: tuple[tuple[float, float], ...] = ()

    def predict(self, batch: np.ndarray, tokens_per_request: np.ndarray) -> np.ndarray:
        b = np.asarray(batch, dtype=float)
        t = np.asarray(tokens_per_request, dtype=float)
        if self.phase == "prefill":
            feats = _prefill_features(b, b * t, b * t * t, self.knee)
            return np.maximum(
                self.floor, feats @ np.array(self.coef) + _hinge_sum(b * t, self.hinges)
            )
        feats = _decode_features(b, b * t)
        return np.maximum(self.floor, feats @ np.array(self.coef))


def _segment_knots(tokens: np.ndarray) -> np.ndarray:
    """Interior knots of the piecewise-linear token function: the distinct batch-token values
    strictly between the smallest and the largest (at most ``MAX_PREFILL_KNOTS``, evenly
    spread over the sorted values when there are more)."""
    inner = np.unique(tokens)[1:-1]
    if len(inner) > MAX_PREFILL_KNOTS:
        inner = inner[np.unique(np.round(np.linspace(0, len(inner) - 1, MAX_PREFILL_KNOTS)))]
    return inner


def _segment_columns(tokens: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Ramp j rises with slope 1 over segment j: [0, k_0], [k_0, k_1], ..., [k_last, inf)."""
    edges = np.concatenate([[0.0], knots])
    cols = [
        np.clip(tokens - lo, 0.0, hi - lo) for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    cols.append(np.maximum(0.0, tokens - edges[-1]))
    return np.column_stack(cols)


def _fit_prefill_pwl(
    b: np.ndarray, t: np.ndarray, y: np.ndarray, mask: np.ndarray, lam: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Smoothed monotone piecewise-linear prefill fit (no floor) on the given points.

    ``t = c0 + cn n + c2 S + f(T)``, ``f`` piecewise linear with knots at the interior batch-token
    values, every segment slope ``>= 0`` (so monotone), linear beyond both ends. Least squared
    relative error plus ``lam x sum_j (e_j (s_j - s_{j-1}))^2`` where ``e_j = k_j / y(k_j)``
    makes the slope jumps dimensionless (elasticity). Returns (coef of const/requests/tokens_sq,
    segment slopes, knots, effective degrees of freedom of the data part).
    """
    tokens = b * t
    use_seg = bool(mask[2] or mask[4])
    knots = _segment_knots(tokens) if (mask[4] and use_seg) else np.array([])
    base = np.column_stack([np.ones_like(tokens), b, tokens * t])[:, [mask[0], mask[1], mask[3]]]
    seg = _segment_columns(tokens, knots) if use_seg else np.zeros((len(y), 0))
    seg_on = np.ones(seg.shape[1], dtype=bool)
    if use_seg and not mask[2]:
        seg_on[0] = False  # no base per-token slope: the first segment stays flat
    feats = np.column_stack([base, seg[:, seg_on]])
    scale = np.abs(feats).max(axis=0)
    scale[scale == 0] = 1.0
    a = feats / scale / y[:, None]
    nb = base.shape[1]
    rows = []
    seg_idx = np.full(seg.shape[1], -1)
    seg_idx[seg_on] = nb + np.arange(int(seg_on.sum()))
    for j, knot in enumerate(knots):
        lo, hi = seg_idx[j], seg_idx[j + 1]
        if lo < 0 or hi < 0:
            continue
        e = knot / float(np.mean(y[tokens == knot]))
        r = np.zeros(feats.shape[1])
        r[hi], r[lo] = e / scale[hi], -e / scale[lo]
        rows.append(r)
    pen = np.array(rows).reshape(-1, feats.shape[1])
    x = nnls(
        np.vstack([a, math.sqrt(lam) * pen]), np.concatenate([np.ones(len(y)), np.zeros(len(pen))])
    )
    act = x > 0
    ap, rp = a[:, act], pen[:, act]
    df = (
        float(np.trace(ap @ np.linalg.pinv(ap.T @ ap + lam * rp.T @ rp) @ ap.T))
        if act.any()
        else 0.0
    )
    coef = x / scale
    base_coef = np.zeros(3)
    base_coef[[mask[0], mask[1], mask[3]]] = coef[:nb]
    slopes = np.zeros(seg.shape[1])
    slopes[seg_on] = coef[nb:]
    return base_coef, slopes, knots, df


def _pwl_form(
    base_coef: np.ndarray, slopes: np.ndarray, knots: np.ndarray, floor: float
) -> _LatencyForm:
    """The fit as a hinge form: coef (c0, cn, s_0, c2, 0) plus hinges (k_j, s_{j+1} - s_j)."""
    s0 = float(slopes[0]) if len(slopes) else 0.0
    coef = (float(base_coef[0]), float(base_coef[1]), s0, float(base_coef[2]), 0.0)
    hinges = tuple(
        (float(k), float(slopes[j + 1] - slopes[j]))
        for j, k in enumerate(knots)
        if slopes[j + 1] != slopes[j]
    )
    return _LatencyForm("prefill", coef, 0.0, float(floor), hinges)


def _fit_prefill(
    b: np.ndarray, t: np.ndarray, y: np.ndarray, mask: np.ndarray, floor: bool
) -> _LatencyForm:
    """Best prefill form: for each smoothing ``lam`` in ``PREFILL_SMOOTHING``, the floor partition
    (the k smallest-batch-token points, k = 0..n//2, on a constant floor) with the least squared
    relative error; among those, the ``lam`` with the least generalized cross-validation score
    ``n SSE / (n - df)^2`` (computed from these points only)."""
    tokens = b * t
    order = np.argsort(tokens, kind="stable")
    n = len(y)
    best: tuple[float, _LatencyForm] | None = None
    for lam in PREFILL_SMOOTHING:
        inner: tuple[float, float, _LatencyForm] | None = None
        for k in range(0, n // 2 + 1) if floor else [0]:
            low, high = order[:k], order[k:]
            fl = _floor_value(y[low]) if k else 0.0
            base_coef, slopes, knots, df = _fit_prefill_pwl(b[high], t[high], y[high], mask, lam)
            form = _pwl_form(base_coef, slopes, knots, fl)
            sse = float(np.sum((form.predict(b, t) / y - 1.0) ** 2))
            if inner is None or sse < inner[0] - 1e-15:
                inner = (sse, df + (1.0 if k else 0.0), form)
        assert inner is not None
        sse, df, form = inner
        score = n * sse / max(n - df, 0.5) ** 2
        if best is None or score < best[0] - 1e-15:
            best = (score, form)
    assert best is not None
    return best[1]


def _fit_form(
    phase: str,
    b: np.ndarray,
    t: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    floor: bool,
    kv_floor: float = 0.0,
) -> _LatencyForm:
    """Fit one phase's latency form on these points (all choices made from them alone)."""
    if phase == "decode":
        feats = _decode_features(b, b * t)
        coef = np.zeros(feats.shape[1])
        coef[mask] = _fit_relative(feats[:, mask], y, fixed=kv_floor * b * t)
        coef[2] += kv_floor  # d2 >= the KV-cache read time per context token
        return _LatencyForm(phase, tuple(float(c) for c in coef))
    return _fit_prefill(b, t, y, mask, floor)


def _monotone_outliers(b: np.ndarray, t: np.ndarray, y: np.ndarray, ratio: float) -> list[int]:
    """Points breaking monotonicity by more than ``ratio``, most-violating first.

    Point i violates with j when j has no larger batch and no larger tokens per request yet is
    more than ``ratio`` x slower. Repeatedly drop the point in the most violations (ties: the
    larger point), at most 10% of the points.
    """
    alive = np.ones(len(y), dtype=bool)
    out: list[int] = []
    for _ in range(int(0.1 * len(y))):
        counts = np.zeros(len(y), dtype=int)
        for i in np.flatnonzero(alive):
            dom = alive & (b <= b[i]) & (t <= t[i]) & (y > ratio * y[i])
            dom[i] = False
            counts[i] += int(dom.sum())
            counts[dom] += 1
        if counts.max() == 0:
            break
        cand = np.flatnonzero(counts == counts.max())
        worst = int(max(cand, key=lambda i: (b[i] * t[i], i)))
        alive[worst] = False
        out.append(worst)
    return out


@dataclass
class _LatencyFit:
    form: _LatencyForm
    used: np.ndarray  # bool per row: kept in the fit
    note: str


def _fit_latency(
    phase: str,
    rows: pd.DataFrame,
    mask: np.ndarray,
    floor: bool,
    outlier_ratio: float,
    kv_floor: float,
) -> _LatencyFit:
    b = rows["batch_size"].to_numpy(dtype=float)
    t = rows["tokens_per_request"].to_numpy(dtype=float)
    y = rows["latency_s"].to_numpy(dtype=float)
    used = np.ones(len(y), dtype=bool)
    notes = []
    for i in _monotone_outliers(b, t, y, outlier_ratio):
        used[i] = False
        notes.append(
            f"excluded outlier batch {int(b[i])} x {int(t[i])} tokens "
            f"({y[i] * 1e3:.4g} ms: over {outlier_ratio:g}x faster than smaller points)"
        )
    form = _fit_form(phase, b[used], t[used], y[used], mask, floor, kv_floor)
    return _LatencyFit(form=form, used=used, note="; ".join(notes))


def _in_sample_mape(rows: pd.DataFrame, form: _LatencyForm) -> float:
    """Mean relative error of the fit on the points it was fitted on (fraction)."""
    pred = form.predict(rows["batch_size"].to_numpy(), rows["tokens_per_request"].to_numpy())
    return float(np.mean(np.abs(pred / rows["latency_s"].to_numpy(dtype=float) - 1.0)))


def kv_read_floor_s(model: str, gpu: str, tp: int) -> float:
    """Least decode time per context token (s): reading its KV cache at the HBM peak.

    ``kv_bytes_per_token / (tp x HBM bandwidth)``: the cache is sharded over the ``tp`` GPUs.
    Used as the lower bound of ``d2`` so that decode time always grows with the context held
    (the roofline's memory side), even where a profile's context sweep is flat.
    """
    spec = load_model(model)
    return spec.kv_bytes_per_token / (tp * profile_gpu_spec(gpu).hbm_bandwidth_bytes_per_s)
