"""The service-level objective: one dataclass (the schema of the ``slo`` config group).

The paper's limits (Table VI) are written once, as the defaults of :class:`SLO`: slowdown at
P50/P90/P99 at most TTFT 2/3/6, TBT 1.25/1.5/5, E2E 1.25/1.5/5; all nine must hold.
:meth:`SLO.judge` is the one SLO judgment of the suite (replay summary, study points, report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from replay.errors import need

METRICS = ("ttft", "tbt", "e2e")


def _f(default, help: str):  # noqa: A002 - "help" is the documented name
    return field(default_factory=lambda d=default: list(d), metadata={"help": help})


@dataclass
class SLO:
    """Slowdown limits at percentiles (slowdown vs. the request alone on the reference machine)."""

    name: str = field(default="paper", metadata={"help": "display name of this SLO"})
    percentiles: list[float] = _f([50.0, 90.0, 99.0], "percentiles the limits apply to")
    ttft: list[float] = _f([2.0, 3.0, 6.0], "TTFT slowdown limit at each percentile")
    tbt: list[float] = _f([1.25, 1.5, 5.0], "TBT slowdown limit at each percentile")
    e2e: list[float] = _f([1.25, 1.5, 5.0], "E2E slowdown limit at each percentile")

    def __post_init__(self) -> None:
        self.percentiles = [float(p) for p in self.percentiles]
        n = len(self.percentiles)
        need(n >= 1, "slo.percentiles", "needs at least one percentile")
        need(all(0 < p <= 100 for p in self.percentiles), "slo.percentiles", "must be in (0, 100]")
        need(self.percentiles == sorted(set(self.percentiles)), "slo.percentiles", "must ascend")
        for k in METRICS:
            v = [float(x) for x in getattr(self, k)]
            setattr(self, k, v)
            need(len(v) == n, f"slo.{k}", f"needs {n} limits (one per percentile), got {len(v)}")
            need(all(x >= 1 and math.isfinite(x) for x in v), f"slo.{k}",
                 "slowdown limits must be finite and >= 1")  # fmt: skip

    @property
    def keys(self) -> list[str]:
        """The percentile keys of the limits: 'p50', 'p90', 'p99', 'p99.9', ..."""
        return [f"p{q:g}" for q in self.percentiles]

    def limits(self) -> dict[str, list[float]]:
        return {k: list(getattr(self, k)) for k in METRICS}

    def request_limits(self) -> dict[str, float]:
        """Per-request limits for goodput: the limit at the highest percentile of each metric."""
        return {k: getattr(self, k)[-1] for k in METRICS}

    def judge(self, slowdown: dict, completed: int | None) -> dict:
        """Every slowdown percentile at most its limit.

        ``slowdown``: ``{"ttft": {"p50": ..}, "tbt": .., "e2e": ..}`` (a missing, None or NaN
        percentile fails). Returns ``{"checks": {"ttft_p50": {"slowdown", "limit", "ok"}, ..},
        "met": bool, "worst_ratio": max slowdown / limit (inf when a percentile is unknown)}``.
        No completed request: not met.
        """
        checks: dict = {}
        met = bool(completed)
        worst = 0.0
        for name in METRICS:
            pct = slowdown.get(name) or {}
            for key, lim in zip(self.keys, getattr(self, name), strict=True):
                val = pct.get(key)
                val = math.nan if val is None else float(val)
                good = bool(not math.isnan(val) and val <= lim)
                checks[f"{name}_{key}"] = {"slowdown": val, "limit": lim, "ok": good}
                met = met and good
                worst = max(worst, math.inf if math.isnan(val) else val / lim)
        return {"checks": checks, "met": met, "worst_ratio": worst}


PAPER = SLO()
