"""The fitted phase model of one (model, gpu, tp): hot-path time and power queries."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from characterize.modeling.phase.errors import ExtrapolationWarning
from characterize.modeling.phase.power import _PowerCurve


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
