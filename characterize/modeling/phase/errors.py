"""Errors and warnings of the phase model."""

from __future__ import annotations

from characterize.modeling.specs import SpecError


class PhaseModelError(SpecError):
    """No fit for a (model, gpu, tp), or a fit/calibration is impossible (one-line message)."""


class ExtrapolationWarning(UserWarning):
    """A PhaseModel was queried beyond the range its profile measured."""
