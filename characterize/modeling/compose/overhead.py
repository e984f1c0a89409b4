"""The engine overhead a composed profile adds to its operator sums, and where its values live.

Per-operation latencies are kernel times measured under CUDA graphs; a serving engine's
iteration also spends time outside the kernels (scheduling, input preparation, sampling,
output processing, launch gaps) and on each new request (vLLM's prefill dispatch, the API
server's admission), and its kernels need not run exactly as fast as the package measured
them in isolation. :class:`EngineOverhead` is that difference, in a small form:

    iteration = kernel_scale x composed + step_s + per_request_s x requests in the iteration
                + per_prefill_s x prompts (or prompt chunks) it prefills

so a decode step of ``B`` requests gains ``step_s + per_request_s x B`` and a prefill iteration
of ``n`` prompts ``step_s + (per_request_s + per_prefill_s) x n``, after its composed time is
scaled by ``kernel_scale`` (1: as composed). The values are fitted per
engine and GPU on the package's measured serving points (:mod:`.fit`) and committed in
``characterize/modeling/data/composed/overhead.csv``; a composed table states the values it
added in its ``source``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from characterize.modeling.profiles import DATA_ROOT, ProfileError

COMPOSED_DIR = DATA_ROOT / "composed"
OVERHEAD_CSV = COMPOSED_DIR / "overhead.csv"
OVERHEAD_COLUMNS = [
    "engine",
    "gpu",
    "kernel_scale",
    "step_ms",
    "per_request_ms",
    "per_prefill_ms",
    "fitted_on",
    "points",
    "note",
]


@dataclass(frozen=True)
class EngineOverhead:
    """Time an engine spends per iteration outside the measured kernels (seconds)."""

    step_s: float = 0.0
    per_request_s: float = 0.0
    per_prefill_s: float = 0.0
    kernel_scale: float = 1.0
    origin: str = "none"  # where the values come from (shown in a table's source)

    def __post_init__(self) -> None:
        if not (isinstance(self.kernel_scale, int | float) and 0 < self.kernel_scale < math.inf):
            raise ProfileError(
                f"engine overhead: kernel_scale must be finite and > 0, got {self.kernel_scale!r}"
            )
        for name in ("step_s", "per_request_s", "per_prefill_s"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ProfileError(f"engine overhead: {name} must be finite and >= 0, got {v!r}")

    @property
    def is_zero(self) -> bool:
        return (
            self.step_s == 0
            and self.per_request_s == 0
            and self.per_prefill_s == 0
            and self.kernel_scale == 1.0
        )

    def prefill_s(self, n_prompts) -> np.ndarray:
        """Overhead of a prefill iteration of ``n_prompts`` prompts."""
        n = np.asarray(n_prompts, dtype=float)
        return self.step_s + (self.per_request_s + self.per_prefill_s) * n

    def decode_s(self, batch) -> np.ndarray:
        """Overhead of a decode step of ``batch`` requests."""
        return self.step_s + self.per_request_s * np.asarray(batch, dtype=float)

    def describe(self) -> str:
        if self.is_zero:
            return "no engine overhead added (operator sums only)"
        return (
            f"composed x {self.kernel_scale:.4f} + engine overhead {self.step_s * 1e3:.3f} ms/iteration + "
            f"{self.per_request_s * 1e3:.4f} ms/request + {self.per_prefill_s * 1e3:.3f} "
            f"ms/prefilled prompt ({self.origin})"
        )


def read_overheads(path: str | Path = OVERHEAD_CSV) -> pd.DataFrame:
    """The committed overhead table (columns :data:`OVERHEAD_COLUMNS`)."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: no engine overhead table (python -m "
                           "characterize.modeling.compose.build writes it)")  # fmt: skip
    df = pd.read_csv(path, keep_default_na=False)
    missing = [c for c in OVERHEAD_COLUMNS if c not in df.columns]
    if missing:
        raise ProfileError(f"{path}: missing column '{missing[0]}'")
    return df


def committed_overhead(engine: str, gpu: str, path: str | Path = OVERHEAD_CSV) -> EngineOverhead:
    """The committed overhead of ``engine`` on ``gpu``; zero (with a note) where there is none."""
    df = read_overheads(path)
    row = df[(df["engine"] == engine) & (df["gpu"] == gpu)]
    if row.empty:
        return EngineOverhead(origin=f"no fitted overhead for {engine} on {gpu}")
    r = row.iloc[0]
    return EngineOverhead(
        kernel_scale=float(r["kernel_scale"]),
        step_s=float(r["step_ms"]) / 1e3,
        per_request_s=float(r["per_request_ms"]) / 1e3,
        per_prefill_s=float(r["per_prefill_ms"]) / 1e3,
        origin=str(r["fitted_on"]),
    )
