"""The fitted phase model of one (model, gpu, tp): hot-path time and power queries."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from characterize.modeling.phase.errors import ExtrapolationWarning
from characterize.modeling.phase.power import _PowerCurve


@dataclass
class PhaseModel:
    """Time and power of prefill and decode iterations for one (model, gpu, tp).

    Hot calls (:meth:`prefill_time_sums`, :meth:`decode_time`) are pure-Python float arithmetic
    on precomputed attributes. The first query beyond the measured range warns once per model
    instance and kind (:class:`ExtrapolationWarning`), with one comparison per check:

    - prefill batch: the batch's tokens exceed the most measured (``max_prefill_tokens``);
    - prefill prompt: ``tokens_sq > n_requests * max_prompt_tokens**2``, i.e. the mean of the
      squared prompt lengths exceeds the longest measured prompt's square, which proves at least
      one prompt (its attended context) is longer than any measured: for whole prompts
      (``sum p^2``) and for cached suffixes alike (``sum p^2 - s^2 > n L^2`` needs some
      ``p > L``). It misses a long prompt batched with enough short ones (the replay's summary
      checks every prompt exactly: :meth:`range_notes`);
    - decode step: the predicted step is slower than the fit's prediction at (largest measured
      batch, largest measured total context) -- decode_time being monotone, every query inside
      that box passes this one;
    - decode context: ``total_context_tokens / batch_size`` (the mean context per request, so
      at least one request's) exceeds the longest measured per-request context
      (``max_request_context``): a batch of one at 100k context can be faster than the box
      corner and is caught here.

    What an extrapolation assumes (shown with the notes): prefill beyond the measured prompt
    length continues the fitted quadratic attention term (``c2 * sum p^2``) and the linear and
    hinge terms; decode cost stays linear per context token held (the KV read), so a model whose
    spec borrows another's profiles (Llama-3.1-70B's 128k contexts on Llama-2-70B's fit,
    in the reference profiles measured up to 8,192-token prompts and 8,256 tokens of context per
    request) is priced by that fit's slopes beyond the measured range.
    ``max_prompt_tokens`` / ``max_request_context`` = 0 means unknown (those checks off).

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
    max_prompt_tokens: int = 0  # longest measured prompt (prefill tokens_per_request); 0: unknown
    max_request_context: int = 0  # longest measured decode context per request; 0: unknown

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
        self._decode_box_s = self._decode_raw(self.max_decode_batch, self.max_decode_context)
        self._decode_warn_s = self._decode_box_s
        lp = int(self.max_prompt_tokens)
        self._prompt_warn_sq = float(lp * lp) if lp > 0 else math.inf
        lc = int(self.max_request_context)
        self._context_warn = float(lc) if lc > 0 else math.inf
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
        if tokens_sq > self._prompt_warn_sq * n_requests:
            self._warn_prompt(n_requests, tokens_sq)
        t = self._c0 + self._cn * n_requests + self._c1 * tokens + self._c2 * tokens_sq
        for knee, slope in self._hinges:
            if tokens <= knee:
                break
            t += slope * (tokens - knee)
        return t if t > self._floor else self._floor

    def prefill_times_alone(self, prompt_tokens) -> np.ndarray:
        """Seconds of a prefill of each prompt alone: ``prefill_time_sums(1, L, L*L)`` for an
        array of lengths L, with the same floating-point operations in the same order
        (identical values; no range warnings: the replay reports its range notes itself)."""
        p = np.asarray(prompt_tokens, dtype=np.int64)
        tokens = p.astype(float)
        t = self._c0 + self._cn * 1 + self._c1 * tokens + self._c2 * (p * p).astype(float)
        for knee, slope in self._hinges:  # ascending knees, as prefill_time_sums adds them
            t = np.where(tokens > knee, t + slope * (tokens - knee), t)
        return np.where(t > self._floor, t, self._floor)

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
        if total_context_tokens > self._context_warn * batch_size:
            self._warn_context(batch_size, total_context_tokens)
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

    # -- range checks --------------------------------------------------------------------
    def _name(self) -> str:
        return f"PhaseModel({self.model}, {self.gpu}, tp={self.tp})"

    def _msg_prefill(self, tokens) -> str:
        return (
            f"{self._name()}: prefill of {tokens} batch tokens is beyond the fitted range "
            f"(max {self.max_prefill_tokens}); extrapolating"
        )

    def _msg_prompt(self, what: str) -> str:
        return (
            f"{self._name()}: prefill of {what} is beyond the longest measured prompt "
            f"({self.max_prompt_tokens} tokens); extrapolating the fitted quadratic attention term"
        )

    def _msg_decode(self, what: str) -> str:
        return (
            f"{self._name()}: decode of {what} is beyond the fitted range (max batch "
            f"{self.max_decode_batch}, max total context {self.max_decode_context}); "
            "extrapolating"
        )

    def _msg_context(self, what: str) -> str:
        return (
            f"{self._name()}: decode of {what} is beyond the longest measured context per "
            f"request ({self.max_request_context} tokens); extrapolating linearly per context "
            "token (KV read)"
        )

    def _warn(self, msg: str) -> None:
        warnings.warn(msg, ExtrapolationWarning, stacklevel=4)

    def _warn_prefill(self, tokens: int) -> None:
        self._prefill_warn_tokens = math.inf
        self._warn(self._msg_prefill(tokens))

    def _warn_prompt(self, n_requests: int, tokens_sq: int) -> None:
        self._prompt_warn_sq = math.inf
        rms = math.sqrt(tokens_sq / n_requests)
        what = f"{n_requests} prompt(s) with root-mean-square length {rms:.0f} tokens"
        self._warn(self._msg_prompt(what))

    def _warn_decode(self, batch_size: int, total_context_tokens: int) -> None:
        self._decode_warn_s = math.inf
        self._warn(
            self._msg_decode(f"batch {batch_size} with {total_context_tokens} context tokens")
        )

    def _warn_context(self, batch_size: int, total_context_tokens: int) -> None:
        self._context_warn = math.inf
        what = f"batch {batch_size} with {total_context_tokens} context tokens"
        self._warn(self._msg_context(what))

    def range_notes(
        self,
        prefill_batch_tokens: int = 0,
        prompt_tokens: int = 0,
        decode_step_s: float = 0.0,
        request_context: int = 0,
        decode_step_batch: int = 0,
    ) -> list[str]:
        """Notes (the warnings' texts) for a run's largest queries, exact and stateless (no
        warning, no once-only state): the largest prefill iteration's tokens, the longest single
        prompt, the slowest decode step (s; ``decode_step_batch``: its batch size, which names
        the step with the total context it implies) and the longest context any request decoded
        with. The simulator reports these in its summary (``replay.simulate``)."""
        notes = []
        if prefill_batch_tokens > self.max_prefill_tokens:
            notes.append(self._msg_prefill(int(prefill_batch_tokens)))
        if 0 < self.max_prompt_tokens < prompt_tokens:
            notes.append(self._msg_prompt(f"a prompt of {int(prompt_tokens)} tokens"))
        if decode_step_s > self._decode_box_s:
            b = int(decode_step_batch)
            if b > 0 and self._d2 > 0:
                c = (decode_step_s - self._d0 - self._d1 * b - self._d3 * b * b) / self._d2
                what = f"batch {b} with {max(round(c), 0)} context tokens ({decode_step_s:.4g} s)"
            else:
                what = f"a {decode_step_s:.4g} s step"
            notes.append(self._msg_decode(what))
        if 0 < self.max_request_context < request_context:
            notes.append(self._msg_context(f"a request at {int(request_context)} context tokens"))
        return notes

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
