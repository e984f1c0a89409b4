"""How the real runs are judged: ``ladder`` (the rate ladder placed from the simulator's C and R*,
against ``ladder.slo``) and ``compare`` (the steady window, the paired bootstrap, P99's floor)."""

from __future__ import annotations

from dataclasses import dataclass, field

from experiments.validation.schema.checks import at_least, need, pos


@dataclass
class SloConf:
    """The SLO R* is measured against (absolute limits for this model and machine)."""

    ttft_p90_s: float = 2.0
    tbt_p90_s: float = 0.2

    def check(self, key: str) -> None:
        pos(self.ttft_p90_s, f"{key}.ttft_p90_s")
        pos(self.tbt_p90_s, f"{key}.tbt_p90_s")


@dataclass
class LadderConf:
    """The rate ladder placed from the simulator's predicted capacity C and R* (the highest
    rate meeting ``slo``): per trace, rates = fractions x R*, plus an overload run at
    ``overload_x_capacity`` x C."""

    enabled: bool = False  # true: the loads are this ladder (per design), not `loads`
    slo: SloConf = field(default_factory=SloConf)
    rstar_trace: str = "azure-conv-2023"  # the trace R* is predicted and measured on
    lo_rps: float = 0.05  # bisection bounds of the simulated R*, req/s
    hi_rps: float = 20.0  # also the overload rate of the simulated capacity run
    # make validate's: 200 requests a rung take 250 s / rate, so a 0.3 x R* rung costs as much
    # as the 0.9, 1.0 and 1.15 rungs together; 0.6 is the lightest
    fractions: dict[str, list[float]] = field(default_factory=lambda: {
        "azure-conv-2023": [0.6, 0.9, 1.0, 1.15],
        "azure-code-2023": [0.5, 0.9],
    })  # fmt: skip
    overload_x_capacity: dict[str, float] = field(default_factory=lambda: {"azure-conv-2023": 1.3})
    # per trace: a rung (x R*) run again at the end of each design's block (drift)
    sentinel: dict[str, float] = field(default_factory=lambda: {"azure-conv-2023": 0.8})
    min_requests: int = 200  # completed requests per load after warm-up (duration from rate)
    seed: int = 0  # a fresh arrival seed per rate, common across designs

    def check(self, key: str = "ladder") -> None:
        self.slo.check(f"{key}.slo")
        pos(self.lo_rps, f"{key}.lo_rps")
        need(self.hi_rps > self.lo_rps, f"{key}.hi_rps",
             f"must be > ladder.lo_rps ({self.lo_rps:g}), got {self.hi_rps:g}")  # fmt: skip
        for t, fr in self.fractions.items():
            need(len(fr) > 0, f"{key}.fractions.{t}", "must not be empty")
            for i, f in enumerate(fr):
                pos(f, f"{key}.fractions.{t}[{i}]")
        for t, x in self.sentinel.items():
            pos(x, f"{key}.sentinel.{t}")
        for t, x in self.overload_x_capacity.items():
            need(x > 1, f"{key}.overload_x_capacity.{t}", f"must be > 1, got {x:g}")
        at_least(self.min_requests, 1, f"{key}.min_requests")


@dataclass
class CompareConf:
    trim: float = 0.1  # steady-state window for throughput (arrival quantiles)
    bootstrap: int = 2000  # resamples of the paired per-request bootstrap
    confidence: float = 0.95
    p99_min_requests: int = 1000  # P99 reported, not scored, below this
    seed: int = 0  # of the bootstrap (deterministic)
    fit_traces: list[str] = field(default_factory=list)  # traces any fit used (not held out)

    def check(self, key: str = "compare") -> None:
        need(0 <= self.trim < 0.5, f"{key}.trim", f"must be in [0, 0.5), got {self.trim}")
        at_least(self.bootstrap, 100, f"{key}.bootstrap")
        need(0.5 < self.confidence < 1, f"{key}.confidence",
             f"must be in (0.5, 1), got {self.confidence}")  # fmt: skip
        at_least(self.p99_min_requests, 1, f"{key}.p99_min_requests")
