"""Phase-model helpers for the simulator: linear decode coefficients and an analytic model.

The simulator advances a token machine by whole spans of decode iterations in closed form, which
needs ``decode_time(B, C) = a + b*B + c*C + q*B^2`` (seconds; B = batch size, C = total context
tokens; B is constant within a span, so the durations of a span form an arithmetic series).
:func:`decode_coefficients` takes them from ``PhaseModel.decode_coefficients()`` when the phase
model provides them (exact), and otherwise fits them by least squares on a grid of operating
points and reports the largest relative error of that linearization.

:class:`LinearPhaseModel` is a small analytic phase model with the PhaseModel interface
(docs/interfaces.md): useful for what-if studies and for exact tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LinearPhaseModel:
    """Analytic phase model of one (model, gpu, tp); all times in seconds, powers in watts.

    prefill_time = prefill_base_s + prefill_per_request_s * n + prefill_per_token_s * sum(p)
                   + prefill_per_token_sq_s * sum(p^2)
    decode_time  = decode_base_s + decode_per_request_s * B + decode_per_context_token_s * C
    """

    model: str = "analytic"
    gpu: str = "analytic"
    tp: int = 8
    prefill_base_s: float = 0.01
    prefill_per_request_s: float = 0.0
    prefill_per_token_s: float = 1e-4
    prefill_per_token_sq_s: float = 0.0
    decode_base_s: float = 0.02
    decode_per_request_s: float = 1e-4
    decode_per_context_token_s: float = 1e-7
    prefill_power_w: float = 5000.0
    decode_power_w: float = 3500.0
    idle_power_w: float = 600.0

    def prefill_time_sums(self, n_requests: int, tokens: int, tokens_sq: int) -> float:
        """Seconds for one prefill iteration of ``n_requests`` prompts with these token sums."""
        return (
            self.prefill_base_s
            + self.prefill_per_request_s * n_requests
            + self.prefill_per_token_s * tokens
            + self.prefill_per_token_sq_s * tokens_sq
        )

    def prefill_time(self, prompt_lens: Sequence[int]) -> float:
        """Seconds for one prefill iteration of the given prompts."""
        lens = [int(p) for p in prompt_lens]
        return self.prefill_time_sums(len(lens), sum(lens), sum(p * p for p in lens))

    def decode_time(self, batch_size: int, total_context_tokens: int) -> float:
        """Seconds for one decode step of ``batch_size`` requests holding this many tokens."""
        return (
            self.decode_base_s
            + self.decode_per_request_s * batch_size
            + self.decode_per_context_token_s * total_context_tokens
        )

    def decode_coefficients(self) -> tuple[float, float, float]:
        """(a, b, c) with decode_time(B, C) == a + b*B + c*C exactly."""
        return (self.decode_base_s, self.decode_per_request_s, self.decode_per_context_token_s)

    def prefill_power(self, batch_tokens: int) -> float:
        """Watts of the whole instance during a prefill iteration."""
        return self.prefill_power_w

    def decode_power(self, batch_size: int) -> float:
        """Watts of the whole instance during a decode iteration."""
        return self.decode_power_w

    def fit_report(self) -> list[dict]:
        """No fit: an analytic model has no held-out error."""
        return []


def _check(pm, coef) -> bool:
    a, b, c, q = coef
    # small points, inside any fitted range (a PhaseModel warns once beyond it)
    for bs, ctx in ((1, 128), (2, 1024), (8, 4096), (16, 16384)):
        want = float(pm.decode_time(bs, ctx))
        got = a + b * bs + q * bs * bs + c * ctx
        if abs(got - want) > 1e-9 * max(abs(want), 1e-9):
            return False
    return True


def decode_coefficients(pm, max_batch: int = 512, max_context: int = 8192):
    """(a, b, c, q, max_rel_error) so that decode_time(B, C) ~= a + b*B + c*C + q*B^2.

    Exact (error 0.0) from ``pm.decode_coefficients()`` (3 or 4 numbers in that order) or from
    ``pm.decode_coef`` = (d0, d1, d2, d3) of characterize.modeling.phase_model.PhaseModel, after a check
    against ``decode_time`` at a few points. Otherwise a least-squares fit of (a, b, c, q) on B in
    1..max_batch (powers of two) and per-request context 16..max_context, weighted by 1/time so
    the error is relative; the largest relative error on the grid is returned.
    """
    getter = getattr(pm, "decode_coefficients", None)
    candidates = []
    if getter is not None:
        candidates.append(getter())
    candidates.append(getattr(pm, "decode_coef", None))
    for coef in candidates:
        if coef is None:
            continue
        vals = [float(x) for x in coef] + [0.0] * (4 - len(coef))
        if len(vals) == 4 and _check(pm, vals):
            return (*vals, 0.0)
    bs = [1 << k for k in range(max_batch.bit_length()) if (1 << k) <= max_batch]
    ctxs = sorted({int(x) for x in np.geomspace(16, max_context, 10)})
    rows, ys = [], []
    for b in bs:
        for ctx in ctxs:
            rows.append((1.0, float(b), float(b * ctx), float(b * b)))
            ys.append(float(pm.decode_time(b, b * ctx)))
    x = np.asarray(rows)
    y = np.asarray(ys)
    w = 1.0 / np.maximum(y, 1e-12)
    coef, *_ = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)
    err = float(np.max(np.abs(x @ coef - y) / np.maximum(y, 1e-12)))
    return float(coef[0]), float(coef[1]), float(coef[2]), float(coef[3]), err
