"""Modelling assumptions of the phase model, varied one at a time by the sensitivity study.

A fitted :class:`PhaseModel` is one reading of the profiles. :class:`PhaseAdjust` names the
readings the suite can swap in, each a change of the fitted latency forms:

- ``decode_context``: the decode step's cost per context token. ``fitted`` keeps the fit's
  ``d2`` (itself at least the floor); ``kv_read_floor`` replaces it by that floor: reading
  every context token's KV bytes once at the GPUs' HBM peak
  (:func:`~characterize.modeling.phase.latency.kv_read_floor_s`). The other decode terms stay
  as fitted.
- ``decode_batch_sq``: with ``False`` the decode form is refitted without its batch^2 term
  (``fit_phase_model(decode_terms=("const", "batch", "context"))``).
- ``overhead_scale``: a factor on every iteration's fixed cost: the prefill constant ``c0``, the
  prefill floor and the decode constant ``d0``.

The slowdown reference machine (the SLO's denominator) is never adjusted: the SLO stays the
paper's latency target while the simulated machines change (:class:`AdjustedSet`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from characterize.modeling.phase.errors import PhaseModelError
from characterize.modeling.phase.latency import kv_read_floor_s
from characterize.modeling.phase.model import PhaseModel

DECODE_CONTEXT = ("fitted", "kv_read_floor")
#: decode terms of a fit without the batch^2 term
DECODE_TERMS_NO_BATCH_SQ = ("const", "batch", "context")


def _f(default, help: str):  # noqa: A002 - "help" is the documented name
    return field(default=default, metadata={"help": help})


@dataclass
class PhaseAdjust:
    """Which reading of the profiles the phase models take (module doc); the defaults are the
    fit as it is. The schema of ``profiles.adjust``."""

    decode_context: str = _f(
        "fitted", "decode cost per context token: 'fitted' or 'kv_read_floor' (KV bytes / HBM B/s)"
    )
    decode_batch_sq: bool = _f(True, "fit the decode form's batch^2 term (False: refit without)")
    overhead_scale: float = _f(
        1.0, "factor on each iteration's fixed cost (prefill c0 and floor, decode d0)"
    )

    def __post_init__(self) -> None:
        k = "profiles.adjust"
        if self.decode_context not in DECODE_CONTEXT:
            raise PhaseModelError(
                f"{k}.decode_context: unknown value '{self.decode_context}' "
                f"(known: {', '.join(DECODE_CONTEXT)})"
            )
        if not isinstance(self.decode_batch_sq, bool):
            raise PhaseModelError(
                f"{k}.decode_batch_sq: must be true or false, got {self.decode_batch_sq!r}"
            )
        v = self.overhead_scale
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise PhaseModelError(f"{k}.overhead_scale: must be a finite number > 0, got {v!r}")

    @property
    def is_identity(self) -> bool:
        """True when the models are the fit as it is."""
        return self == PhaseAdjust()

    @property
    def decode_terms(self) -> tuple[str, ...] | None:
        """The decode terms to fit (None: the fit's default, every term)."""
        return None if self.decode_batch_sq else DECODE_TERMS_NO_BATCH_SQ

    def label(self) -> str:
        """A short text of what differs from the fit ('' when nothing does)."""
        parts = []
        if self.decode_context != "fitted":
            parts.append(f"decode context {self.decode_context}")
        if not self.decode_batch_sq:
            parts.append("decode without batch^2")
        if self.overhead_scale != 1.0:
            parts.append(f"iteration overhead x{self.overhead_scale:g}")
        return ", ".join(parts)


def adjust_model(pm: PhaseModel, adjust: PhaseAdjust) -> PhaseModel:
    """``pm`` with the adjustments applied, ``source`` saying which (``pm`` itself when the
    adjustment is the identity). ``decode_batch_sq=False`` is the fit's (``pm`` should come
    from a refit without the term: :func:`load_phase_models` with ``adjust``); here it only
    labels the source."""
    if adjust.is_identity:
        return pm
    d0, d1, d2, d3 = pm.decode_coef
    c = list(pm.prefill_coef)
    floor = pm.prefill_floor
    if adjust.decode_context == "kv_read_floor":
        d2 = kv_read_floor_s(pm.model, pm.gpu, pm.tp)
    s = float(adjust.overhead_scale)
    if s != 1.0:
        c[0] *= s
        floor *= s
        d0 *= s
    return replace(
        pm,
        prefill_coef=tuple(c),
        prefill_floor=floor,
        decode_coef=(d0, d1, d2, d3),
        source=f"{pm.source} [adjusted: {adjust.label()}]",
    )


class AdjustedSet:
    """A phase-model set whose models carry an adjustment (taken from ``base``: the plain fits,
    or a refit without the decode batch^2 term); the slowdown reference comes unadjusted from
    ``plain`` (module doc). Other attributes are ``base``'s."""

    def __init__(self, base, adjust: PhaseAdjust, plain) -> None:
        self._base = base
        self._plain = plain
        self.adjust = adjust
        self._cache: dict[tuple[str, str, int], PhaseModel] = {}

    def get(self, model: str, gpu: str, tp: int = 8) -> PhaseModel:
        key = (model, gpu, int(tp))
        pm = self._cache.get(key)
        if pm is None:
            pm = self._cache[key] = adjust_model(self._base.get(model, gpu, tp), self.adjust)
        return pm

    def reference_model(self, model: str) -> PhaseModel:
        return self._plain.reference_model(model)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._base, name)

    def __contains__(self, key: object) -> bool:
        return key in self._base
