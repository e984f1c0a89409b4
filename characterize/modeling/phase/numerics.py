"""Numerics of the fits: non-negative least squares (``scipy.optimize.nnls``) in relative error."""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls as _scipy_nnls


def nnls(a: np.ndarray, b: np.ndarray, max_iter: int | None = None) -> np.ndarray:
    """Non-negative least squares ``min ||a x - b||, x >= 0`` (``scipy.optimize.nnls``).

    Columns should be scaled to comparable magnitudes by the caller.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return _scipy_nnls(a, b, maxiter=max_iter)[0]


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


def _floor_value(y: np.ndarray) -> float:
    """The constant minimizing the squared relative error to ``y``."""
    return float(np.sum(1.0 / y) / np.sum(1.0 / y**2))
