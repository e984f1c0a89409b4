"""The one-line error of a validation step."""

from __future__ import annotations

from experiments.errors import ExperimentError


class StepError(ExperimentError):
    """A validation step failed: ``step <name>: <reason>`` (one line; the app exits 2)."""

    def __init__(self, step: str, reason: str):
        self.step = step
        self.reason = " ".join(str(reason).split()) or "failed"
        super().__init__(f"step {step}: {self.reason}")
