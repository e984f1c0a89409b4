"""Phase power: ``P(x) = min(cap, a + b x / (x + k))`` (instance W) and its fit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from characterize.modeling.phase.numerics import _fit_relative

_POWER_K_GRID = tuple(float(k) for k in np.geomspace(0.25, 65536.0, 49))


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
