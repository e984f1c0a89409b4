"""Summary statistics of a trace table (contract 1).

Definitions (used by :func:`describe` and by the rate transforms, so the two agree):

- span_s: last arrival - first arrival (s).
- mean rate: requests / span_s (req/s); NaN for fewer than 2 requests or a zero span.
- inter-arrival CV: population std / mean of the n-1 gaps between consecutive arrivals.
- busiest second / minute: the most requests whose arrivals fall in any half-open window
  [t, t + 1 s) / [t, t + 60 s) (a sliding window starting at an arrival, not fixed bins).
- token percentiles: linear interpolation (numpy's default); prompt:output ratio is
  sum(prompt_tokens) / sum(output_tokens).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from common.units import S_PER_MINUTE
from traces.schema import check_table

PERCENTILES: tuple[int, ...] = (50, 90, 99)


def mean_rate(arrival_s) -> float:
    """Mean arrival rate in requests/s: n / (last - first arrival); NaN when undefined."""
    a = np.asarray(arrival_s, dtype="float64")
    if a.size < 2:
        return math.nan
    span = float(a[-1] - a[0])
    return a.size / span if span > 0 else math.nan


def interarrival_cv(arrival_s) -> float:
    """Coefficient of variation (population std / mean) of inter-arrival gaps; NaN if undefined."""
    gaps = np.diff(np.asarray(arrival_s, dtype="float64"))
    if gaps.size < 2 or gaps.mean() <= 0:
        return math.nan
    return float(gaps.std() / gaps.mean())


def busiest_window(arrival_s, width_s: float) -> int:
    """Most arrivals in any half-open window [t, t + width_s) (sorted arrivals)."""
    a = np.asarray(arrival_s, dtype="float64")
    if a.size == 0:
        return 0
    ends = np.searchsorted(a, a + width_s, side="left")
    return int((ends - np.arange(a.size)).max())


def describe(df: pd.DataFrame) -> dict:
    """Statistics of a trace: counts, rates, burstiness and token distributions.

    Returns a flat dict of plain Python numbers (JSON-ready except NaN for undefined rates):
    ``requests``, ``span_s`` (s), ``mean_rate_rps`` (req/s), ``interarrival_cv``,
    ``busiest_second_requests``, ``busiest_minute_requests``, and for ``prompt_tokens`` and
    ``output_tokens``: ``<col>_mean``, ``<col>_p50``, ``<col>_p90``, ``<col>_p99``,
    ``<col>_max``; and ``prompt_output_ratio`` (sum prompt / sum output tokens).
    """
    t = check_table(df)
    a = t["arrival_s"].to_numpy()
    out: dict = {
        "requests": int(len(t)),
        "span_s": float(a[-1] - a[0]),
        "mean_rate_rps": mean_rate(a),
        "interarrival_cv": interarrival_cv(a),
        "busiest_second_requests": busiest_window(a, 1.0),
        "busiest_minute_requests": busiest_window(a, S_PER_MINUTE),
    }
    for col in ("prompt_tokens", "output_tokens"):
        x = t[col].to_numpy()
        out[f"{col}_mean"] = float(x.mean())
        for q, v in zip(PERCENTILES, np.percentile(x, PERCENTILES), strict=True):
            out[f"{col}_p{q}"] = float(v)
        out[f"{col}_max"] = int(x.max())
    out["prompt_output_ratio"] = float(t["prompt_tokens"].sum() / t["output_tokens"].sum())
    return out
