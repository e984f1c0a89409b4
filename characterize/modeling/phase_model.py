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
non-negative least squares (``scipy.optimize.nnls``, :func:`nnls`). A point that
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

The implementation is split by concept under :mod:`characterize.modeling.phase` (numerics,
latency fits, power fits, held-out error, the fitted model, the fit, calibration, the model
set); this module keeps every public name importable from one place.
"""

from characterize.modeling.phase.calibration import calibrate
from characterize.modeling.phase.errors import ExtrapolationWarning, PhaseModelError
from characterize.modeling.phase.fit import fit_phase_model
from characterize.modeling.phase.held_out import MIN_POINTS, TARGET_MAPE, _held_out, _power_loo
from characterize.modeling.phase.latency import (
    DECODE_TERMS,
    MAX_PREFILL_KNOTS,
    OUTLIER_RATIO,
    PREFILL_SMOOTHING,
    PREFILL_TERMS,
    _fit_latency,
    kv_read_floor_s,
)
from characterize.modeling.phase.model import PhaseModel
from characterize.modeling.phase.model_set import (
    REFERENCE_GPU,
    REFERENCE_TP,
    PhaseModelSet,
    fit_all,
    load_phase_models,
)
from characterize.modeling.phase.numerics import nnls
from characterize.modeling.phase.power import _fit_power_curve, _PowerCurve
from characterize.modeling.profiles import ProfileError

__all__ = [
    "DECODE_TERMS",
    "MAX_PREFILL_KNOTS",
    "MIN_POINTS",
    "OUTLIER_RATIO",
    "PREFILL_SMOOTHING",
    "PREFILL_TERMS",
    "REFERENCE_GPU",
    "REFERENCE_TP",
    "TARGET_MAPE",
    "ExtrapolationWarning",
    "PhaseModel",
    "PhaseModelError",
    "PhaseModelSet",
    "ProfileError",
    "_PowerCurve",
    "_fit_latency",
    "_fit_power_curve",
    "_held_out",
    "_power_loo",
    "calibrate",
    "fit_all",
    "fit_phase_model",
    "kv_read_floor_s",
    "load_phase_models",
    "nnls",
]
