"""The phase performance model (DESIGN.md contract 3): time and power of one phase iteration.

One :class:`PhaseModel` per (model, gpu, tp), fitted from a profile table (contract 2) by
:func:`fit_phase_model`. All times in seconds, powers in watts for the whole TP instance.

Latency forms (non-negative coefficients and segment slopes, so both are monotone in every
argument):

- prefill of a batch with prompt lengths ``L_i`` (``n`` requests, ``T = sum L_i``,
  ``S = sum L_i^2``)::

      t = max(floor, c0 + cn * n + c2 * S + f(T)),   f(T) = c1 * T + sum_j h_j * max(0, T - k_j)

  ``f`` is a monotone piecewise-linear function of the batch's tokens (every segment slope
  ``c1 + h_1 + ... + h_j >= 0``; the ``h_j`` may be negative) with knots ``k_j`` at the interior
  measured batch-token values (at most ``MAX_PREFILL_KNOTS``), linear beyond the measured range
  with the end segments' slopes. ``c2`` is the causal-attention cost of each prompt, ``cn`` a
  per-request cost. The reference engine (Splitwise paper, 2023) runs a batch of ``b`` prompts
  of 512 tokens about as slowly as one prompt of ``512 b`` tokens, with a roofline-like steep
  knee between ~2k and ~8k tokens and a slightly lower per-token slope beyond, which ``f``
  follows without a fixed shape. The segment slopes are smoothed: the fit adds
  ``lam * sum_j (e_j * (s_j - s_{j-1}))^2`` (``e_j = k_j / t(k_j)``, dimensionless slope
  jumps) and picks ``lam`` from ``PREFILL_SMOOTHING`` by generalized cross-validation on the
  fitted points only. ``floor`` (a constant fitted to the smallest points) is the least time
  of any prefill (weights read, launch overheads). Terms can be dropped with
  ``prefill_terms=`` (``tokens_hinge`` off: one linear ``c1 * T``) / ``prefill_floor=False``;
- one decode step of ``B`` requests holding ``C`` context tokens in all::

      t = d0 + d1 * B + d2 * C + d3 * B^2

  ``d2`` is the KV-cache read per context token (at least :func:`kv_read_floor_s`, the read
  at peak HBM bandwidth, so decode time always grows with the context held), ``d1`` the
  per-request cost, ``d3`` the super-linear batch cost the reference engine shows beyond
  batch ~32.

The fit minimizes relative error (each row weighted 1/latency, the target being MAPE) with a
numpy-only non-negative least squares (Lawson-Hanson active set, :func:`nnls`). A point that
is more than ``outlier_ratio`` (1.5) x faster than a point with no larger batch and no longer
requests breaks monotonicity; such points (at most 10% of a group, most violations first) are
excluded and named in the fit report's ``note``; the same rule, on power, drops power points
far below smaller ones. Nothing else is dropped. Beyond the measured range the forms
extrapolate linearly (roofline-like) in tokens and context (quadratically in prompt length
through the attention term); the first query per model beyond the fitted range emits an
:class:`ExtrapolationWarning`.

Power (instance W) per phase is ``a + b * x / (x + k)`` (``x`` = batch tokens for prefill,
batch size for decode; ``a, b >= 0``, ``k`` from a log grid), clipped to the machine budget
(per-GPU budget x tp, caps applied) -- monotone non-decreasing and saturating. Where the profile
has no power (the H100 reference rows), the fallback takes the shape of the A100 reference
fits of the same model and tp as a fraction of the A100 budget, times this GPU's budget
(prefill stays near the power limit, decode at the A100's decode/prefill ratio); the report's
``power_source`` says which. ``idle_power_w`` is the GPU's idle power x tp.

Held-out error: leave-one-point-out over the profile rows (each row already folds its
repeats), per (model, gpu, tp, phase); every choice of a fit (prefill knots, smoothing ``lam``,
floor partition) is made again inside each fold from its training points alone; ``mape`` and ``max_error`` are FRACTIONS
(0.05 = 5 %). Groups with fewer than ``MIN_POINTS`` points get a ``note`` instead of a claim;
groups above the 5 % target (``TARGET_MAPE``) say so in the ``note``. The report is computed on
the first :meth:`PhaseModel.fit_report` call (fits stay fast).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, partial

import numpy as np
import pandas as pd

from characterize.modeling.profiles import (
    PHASES,
    ProfileError,
    gpu_power_facts,
    machine_profiles,
    profile_gpu_spec,
    read_profiles,
    reference_profiles,
    validate_profiles,
)
from characterize.modeling.specs import SpecError, load_model

MIN_POINTS = 5
TARGET_MAPE = 0.05
OUTLIER_RATIO = 1.5
PREFILL_TERMS = ("const", "requests", "tokens", "tokens_sq", "tokens_hinge")
PREFILL_SMOOTHING = (0.001, 0.003, 0.01, 0.03, 0.1)
MAX_PREFILL_KNOTS = 8
DECODE_TERMS = ("const", "batch", "context", "batch_sq")
_POWER_K_GRID = tuple(float(k) for k in np.geomspace(0.25, 65536.0, 49))


class PhaseModelError(SpecError):
    """No fit for a (model, gpu, tp), or a fit/calibration is impossible (one-line message)."""


class ExtrapolationWarning(UserWarning):
    """A PhaseModel was queried beyond the range its profile measured."""


# ----------------------------------------------------------------------------- numerics


def nnls(a: np.ndarray, b: np.ndarray, max_iter: int | None = None) -> np.ndarray:
    """Non-negative least squares ``min ||a x - b||, x >= 0`` (Lawson-Hanson active set).

    numpy only. Columns should be scaled to comparable magnitudes by the caller.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    m, n = a.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    tol = 1e-12 * max(1.0, float(np.abs(a).max(initial=0.0))) * max(m, n)
    max_iter = max_iter or 3 * n + 10
    w = a.T @ (b - a @ x)
    it = 0
    while (~passive).any() and (w[~passive] > tol).any() and it < max_iter:
        it += 1
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            idx = np.flatnonzero(passive)
            z[idx] = np.linalg.lstsq(a[:, idx], b, rcond=None)[0]
            if (z[idx] > 0).all():
                x = z
                break
            neg = idx[z[idx] <= 0]
            alpha = float(np.min(x[neg] / (x[neg] - z[neg])))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
        w = a.T @ (b - a @ x)
    return x


def _fit_relative(
    features: np.ndarray, y: np.ndarray, fixed: np.ndarray | None = None
) -> np.ndarray:
    """Non-negative coefficients minimizing the sum of squared relative errors of
    ``fixed + features @ coef`` to ``y`` (``fixed``: a known part of the prediction)."""
    scale = np.abs(features).max(axis=0)
    scale[scale == 0] = 1.0
    a = features / scale / y[:, None]
    target = np.ones_like(y) if fixed is None else 1.0 - fixed / y
    return nnls(a, target) / scale


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


def _floor_value(y: np.ndarray) -> float:
    """The constant minimizing the squared relative error to ``y``."""
    return float(np.sum(1.0 / y) / np.sum(1.0 / y**2))


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


@dataclass(frozen=True)
class _PowerCurve:
    """P(x) = min(cap, a + b * x / (x + k)); all >= 0."""

    a: float
    b: float
    k: float
    cap: float

    def __call__(self, x: float) -> float:
        p = self.a + self.b * x / (x + self.k)
        return p if p < self.cap else self.cap

    def scaled(self, factor: float, cap: float) -> _PowerCurve:
        return _PowerCurve(self.a * factor, self.b * factor, self.k, cap)


def _fit_power_curve(x: np.ndarray, p: np.ndarray, cap: float) -> _PowerCurve:
    best: tuple[float, _PowerCurve] | None = None
    for k in _POWER_K_GRID:
        g = x / (x + k)
        coef = _fit_relative(np.column_stack([np.ones_like(g), g]), p)
        pred = np.minimum(cap, coef[0] + coef[1] * g)
        sse = float(np.sum((pred / p - 1.0) ** 2))
        if best is None or sse < best[0] - 1e-15:
            best = (sse, _PowerCurve(float(coef[0]), float(coef[1]), k, cap))
    assert best is not None
    return best[1]


def _power_loo(x: np.ndarray, p: np.ndarray, cap: float) -> np.ndarray:
    err = np.full(len(p), np.nan)
    if len(p) < MIN_POINTS:
        return err
    for i in range(len(p)):
        keep = np.arange(len(p)) != i
        curve = _fit_power_curve(x[keep], p[keep], cap)
        err[i] = abs(curve(float(x[i])) / p[i] - 1.0)
    return err


def kv_read_floor_s(model: str, gpu: str, tp: int) -> float:
    """Least decode time per context token (s): reading its KV cache at the HBM peak.

    ``kv_bytes_per_token / (tp x HBM bandwidth)``: the cache is sharded over the ``tp`` GPUs.
    Used as the lower bound of ``d2`` so that decode time always grows with the context held
    (the roofline's memory side), even where a profile's context sweep is flat.
    """
    spec = load_model(model)
    return spec.kv_bytes_per_token / (tp * profile_gpu_spec(gpu).hbm_bandwidth_bytes_per_s)


# ----------------------------------------------------------------------------- the model


@dataclass
class PhaseModel:
    """Time and power of prefill and decode iterations for one (model, gpu, tp).

    Hot calls (:meth:`prefill_time_sums`, :meth:`decode_time`) are pure-Python float arithmetic
    on precomputed attributes. The first query beyond the fitted range warns once per model
    instance (:class:`ExtrapolationWarning`), with one comparison per call: prefill when the
    batch's tokens exceed the most measured; decode when the predicted step is slower than the
    fit's prediction at (largest measured batch, largest measured total context) -- decode_time
    being monotone, every query inside that box passes silently.

    ``prefill_coef`` = (c0 s, cn s/request, c1 s/token, c2 s/token^2, ch s/token beyond
    ``prefill_knee`` tokens); ``prefill_hinges`` = ((k_j tokens, h_j s/token), ...) further slope
    changes (the fit puts its piecewise-linear token function there, with ``ch = 0``);
    ``prefill_floor`` s is the least time of any prefill. Every segment slope is >= 0.
    ``decode_coef`` = (d0 s, d1 s/request, d2 s/context token, d3 s/request^2).
    """

    model: str
    gpu: str
    tp: int
    prefill_coef: tuple[float, float, float, float, float]
    prefill_knee: float
    prefill_floor: float
    decode_coef: tuple[float, float, float, float]
    prefill_power_curve: _PowerCurve
    decode_power_curve: _PowerCurve
    idle_power_w: float
    max_prefill_tokens: int
    max_decode_batch: int
    max_decode_context: int
    source: str = ""
    prefill_hinges: tuple[tuple[float, float], ...] = ()
    calibration: dict | None = None
    report_builder: Callable[[], list[dict]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._c0, self._cn, self._c1, self._c2, self._ch = (float(c) for c in self.prefill_coef)
        hinges = [(float(k), float(h)) for k, h in self.prefill_hinges]
        if self._ch:
            hinges.append((float(self.prefill_knee), self._ch))
        hinges.sort()
        self._hinges = tuple(hinges)  # (knee, slope change), ascending knees
        self._floor = float(self.prefill_floor)
        self._d0, self._d1, self._d2, self._d3 = (float(c) for c in self.decode_coef)
        self._prefill_warn_tokens = float(self.max_prefill_tokens)
        self._decode_warn_s = self._decode_raw(self.max_decode_batch, self.max_decode_context)
        self._report: list[dict] | None = None

    # -- latency -------------------------------------------------------------------------
    def prefill_time(self, prompt_lens: Sequence[int]) -> float:
        """Seconds for one batched prefill of prompts with these lengths (tokens)."""
        n = 0
        tokens = 0
        tokens_sq = 0
        for length in prompt_lens:
            n += 1
            tokens += length
            tokens_sq += length * length
        return self.prefill_time_sums(n, tokens, tokens_sq)

    def prefill_time_sums(self, n_requests: int, tokens: int, tokens_sq: int) -> float:
        """Seconds for one prefill of ``n_requests`` prompts with ``tokens`` = sum L_i and
        ``tokens_sq`` = sum L_i^2 (hot path)."""
        if tokens > self._prefill_warn_tokens:
            self._warn_prefill(tokens)
        t = self._c0 + self._cn * n_requests + self._c1 * tokens + self._c2 * tokens_sq
        for knee, slope in self._hinges:
            if tokens <= knee:
                break
            t += slope * (tokens - knee)
        return t if t > self._floor else self._floor

    def decode_time(self, batch_size: int, total_context_tokens: int) -> float:
        """Seconds for one decode step of ``batch_size`` requests holding
        ``total_context_tokens`` KV tokens in all (hot path)."""
        t = (
            self._d0
            + self._d1 * batch_size
            + self._d2 * total_context_tokens
            + self._d3 * batch_size * batch_size
        )
        if t > self._decode_warn_s:
            self._warn_decode(batch_size, total_context_tokens)
        return t

    def decode_coefficients(self) -> tuple[float, float, float, float]:
        """(d0, d1, d2, d3): ``decode_time(B, C) == d0 + d1*B + d2*C + d3*B^2`` exactly."""
        return (self._d0, self._d1, self._d2, self._d3)

    def _decode_raw(self, batch_size: float, total_context_tokens: float) -> float:
        return (
            self._d0
            + self._d1 * batch_size
            + self._d2 * total_context_tokens
            + self._d3 * batch_size * batch_size
        )

    def _prefill_raw(self, n_requests: float, tokens: float, tokens_sq: float) -> float:
        t = self._c0 + self._cn * n_requests + self._c1 * tokens + self._c2 * tokens_sq
        for knee, slope in self._hinges:
            t += slope * max(0.0, tokens - knee)
        return max(t, self._floor)

    def _warn_prefill(self, tokens: int) -> None:
        self._prefill_warn_tokens = math.inf
        warnings.warn(
            f"PhaseModel({self.model}, {self.gpu}, tp={self.tp}): prefill of {tokens} batch "
            f"tokens is beyond the fitted range (max {self.max_prefill_tokens}); extrapolating",
            ExtrapolationWarning,
            stacklevel=3,
        )

    def _warn_decode(self, batch_size: int, total_context_tokens: int) -> None:
        self._decode_warn_s = math.inf
        warnings.warn(
            f"PhaseModel({self.model}, {self.gpu}, tp={self.tp}): decode of batch {batch_size} "
            f"with {total_context_tokens} context tokens is beyond the fitted range (max batch "
            f"{self.max_decode_batch}, max total context {self.max_decode_context}); "
            "extrapolating",
            ExtrapolationWarning,
            stacklevel=3,
        )

    # -- power ---------------------------------------------------------------------------
    def prefill_power(self, batch_tokens: int) -> float:
        """Instance watts while a prefill of ``batch_tokens`` tokens runs."""
        return self.prefill_power_curve(batch_tokens)

    def decode_power(self, batch_size: int) -> float:
        """Instance watts while a decode step of ``batch_size`` requests runs."""
        return self.decode_power_curve(batch_size)

    # -- report --------------------------------------------------------------------------
    def fit_report(self) -> list[dict]:
        """Held-out error rows, one per phase (plus calibration rows after :func:`calibrate`).

        Keys: model, gpu, tp, phase, kind, points, mape, max_error (held-out, FRACTIONS,
        0.05 = 5 %), fit_mape (in-sample, fraction), outliers, power_source, power_points,
        power_mape, power_max_error (fractions), note.
        Computed on first call (leave-one-point-out refits) and cached.
        """
        if self._report is None:
            self._report = self.report_builder() if self.report_builder else []
        return [dict(r) for r in self._report]


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


# ----------------------------------------------------------------------------- calibration


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


# ----------------------------------------------------------------------------- sets


class PhaseModelSet:
    """All PhaseModels fitted from one profile source, keyed by (model, gpu, tp)."""

    def __init__(
        self,
        models: Iterable[PhaseModel] = (),
        source: str = "",
        *,
        pending: Mapping[tuple[str, str, int], Callable[[], PhaseModel]] | None = None,
    ) -> None:
        """``models`` are fitted already; ``pending`` maps further keys to the fit that makes
        them, run on first use (a replay needs two or three of a source's models, so the
        others are never fitted)."""
        self._models = {(m.model, m.gpu, m.tp): m for m in models}
        self._pending = dict(pending or {})
        self.source = source

    def keys(self) -> list[tuple[str, str, int]]:
        """The (model, gpu, tp) combinations of this source, sorted."""
        return sorted({*self._models, *self._pending})

    def __contains__(self, key: object) -> bool:
        return key in self._models or key in self._pending

    def __len__(self) -> int:
        return len(self.keys())

    def __iter__(self):
        return iter(self._fitted(k) for k in self.keys())

    def _fitted(self, key: tuple[str, str, int]) -> PhaseModel:
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = self._pending.pop(key)()
        return model

    def get(self, model: str, gpu: str, tp: int = 8) -> PhaseModel:
        """The PhaseModel of (model, gpu, tp); a one-line :class:`PhaseModelError` if absent."""
        try:
            return self._fitted((model, gpu, int(tp)))
        except KeyError:
            have = ", ".join(f"{m}/{g}/tp{t}" for m, g, t in self.keys()) or "none"
            raise PhaseModelError(
                f"no phase model for {model}/{gpu}/tp{tp} in profiles '{self.source}' "
                f"(have: {have})"
            ) from None

    def error_table(self) -> pd.DataFrame:
        """Held-out errors: model, gpu, tp, phase, points, mape, max_error (fractions), plus
        fit_mape (in-sample), outliers, power_source, power_points, power_mape,
        power_max_error, note."""
        cols = ["model", "gpu", "tp", "phase", "points", "mape", "max_error", "fit_mape",
                "outliers", "power_source", "power_points", "power_mape", "power_max_error",
                "note"]  # fmt: skip
        rows = [
            {c: r.get(c) for c in cols}
            for m in self
            for r in m.fit_report()
            if r.get("kind", "").startswith("held-out")
        ]
        return pd.DataFrame(rows, columns=cols)


def fit_all(profiles: pd.DataFrame, source: str = "", **opts) -> PhaseModelSet:
    """Every (model, gpu, tp) of a (validated) profile table, each fitted on first use."""
    keys = sorted(
        {(m, g, int(t)) for m, g, t in profiles[["model", "gpu", "tp"]].itertuples(index=False)}
    )
    return PhaseModelSet(
        source=source,
        pending={
            (m, g, t): partial(fit_phase_model, profiles, m, g, t, source=source, **opts)
            for m, g, t in keys
        },
    )


@cache
def _reference_set() -> PhaseModelSet:
    return fit_all(reference_profiles(), source="reference")


def load_phase_models(source: str = "reference") -> PhaseModelSet:
    """Fit all PhaseModels of a profile source: 'reference' (bundled Splitwise data, cached
    in-process) or a profile CSV path (read and validated; errors are ProfileError).

    The fits model whole TP instances: rows a CSV holds as one-GPU TP-shard measurements (the
    suite's profiler) get the DGX all-reduce time first (:func:`machine_profiles`)."""
    if source == "reference":
        return _reference_set()
    return fit_all(machine_profiles(read_profiles(source)), source=str(source))


__all__ = [
    "ExtrapolationWarning",
    "PhaseModel",
    "PhaseModelError",
    "PhaseModelSet",
    "ProfileError",
    "calibrate",
    "fit_all",
    "fit_phase_model",
    "load_phase_models",
    "nnls",
]
