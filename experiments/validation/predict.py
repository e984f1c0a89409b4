"""Predict before measuring: the simulator's capacity C and R* of one design (issue 22).

Both come from ``splitbench-replay`` runs of the design as deployed (:mod:`.simargs`) on the
R* trace (``ladder.rstar_trace``, scaled as ``load_defaults`` says):

- C: completions per second while backlogged in one run offered ``ladder.hi_rps``
  (:func:`experiments.validation.judge.capacity_rps`);
- R*: the highest rate whose TTFT P90 and TBT P90 meet ``ladder.slo``, by bisection between
  ``ladder.lo_rps`` and min(C, ``hi_rps``) (:func:`experiments.validation.judge.rstar_bisect`),
  each probe a run long enough for ``ladder.min_requests`` completed requests in its window.

Every probe is a folder of the predict step (its trace, its replay, its metrics), so the
prediction can be audited. The split design's TTFT is taken where its client sees it (the decode
instance's first token), as in the comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from experiments.validation.config import ValidateConfig


def probe_load(c: ValidateConfig, rate: float, name: str):
    """The Load of one simulated probe at ``rate`` (the R* trace, load_defaults' scaling)."""
    from dataclasses import fields

    from experiments.validation.config import LoadDefaults
    from experiments.validation.workload import Load

    lad = c.ladder
    d = c.load_defaults
    vals = {f.name: getattr(d, f.name) for f in fields(LoadDefaults)}
    vals["trace"] = lad.rstar_trace
    vals["duration_s"] = float(math.ceil(lad.min_requests / rate / (1 - 2 * c.compare.trim)))
    vals["max_context"] = int(d.max_context or c.deploy.max_model_len)
    return Load(name=name, rate=float(rate), seed=int(c.seed), **vals)


def predict(
    c: ValidateConfig,
    design: str,
    out: Path,
    simulate: Callable[[Path, Path], Path],
) -> dict:
    """{'capacity_rps', 'rstar_rps', 'probes'}; ``simulate(trace_csv, run_dir)`` runs one
    replay of the design and returns its run folder."""
    from experiments.validation.compare import load_run, run_metrics
    from experiments.validation.judge import capacity_rps, rstar_bisect, slo_ratio
    from experiments.validation.workload import build_trace

    lad = c.ladder
    first = "decode" if design == "splitwise" else "prompt"
    probes: list[dict] = []

    def run_at(rate: float, tag: str):
        d = out / f"{tag}-{rate:.6g}"
        ld = probe_load(c, rate, tag)
        build_trace(ld, d)
        run = load_run(simulate(d / "trace.csv", d / "sim"), first_token=first)
        return run, run_metrics(run, c.compare.trim)

    run, m = run_at(lad.hi_rps, "capacity")
    req = run.requests
    cap = capacity_rps(req["arrival_s"], req["e2e_s"], c.compare.trim)["value"]
    probes.append({"kind": "capacity", "rate": lad.hi_rps, "capacity_rps": cap})

    def meets(rate: float) -> bool:
        _, m = run_at(rate, "rstar")
        r = slo_ratio(m["ttft_s"]["p90"], m["tbt_s"]["p90"], lad.slo.ttft_p90_s, lad.slo.tbt_p90_s)
        probes.append({"kind": "rstar", "rate": rate, "ttft_p90_s": m["ttft_s"]["p90"],
                       "tbt_p90_s": m["tbt_s"]["p90"], "slo_ratio": r})  # fmt: skip
        return bool(r <= 1.0)

    hi = min(lad.hi_rps, cap) if math.isfinite(cap) and cap > lad.lo_rps else lad.hi_rps
    rstar = rstar_bisect(meets, lad.lo_rps, hi, rel_tol=0.02, max_iter=12)
    return {"capacity_rps": cap, "rstar_rps": rstar, "probes": probes,
            "slo": {"ttft_p90_s": lad.slo.ttft_p90_s, "tbt_p90_s": lad.slo.tbt_p90_s}}  # fmt: skip


def ladder_loads(c: ValidateConfig, capacity: float, rstar: float) -> list:
    """The ladder's loads (:func:`experiments.validation.judge.ladder`) as Load objects, in
    their shuffled order; unset fields from ``load_defaults``."""
    from dataclasses import fields

    from experiments.validation.config import LoadDefaults
    from experiments.validation.judge import ladder
    from experiments.validation.workload import Load

    lad = c.ladder
    d = c.load_defaults
    rungs = ladder(capacity, rstar, lad.fractions, lad.overload_x_capacity,
                   min_requests=lad.min_requests, trim=c.compare.trim, seed=lad.seed,
                   sentinel=lad.sentinel)  # fmt: skip
    out = []
    for r in rungs:
        vals = {f.name: getattr(d, f.name) for f in fields(LoadDefaults)}
        vals.update(trace=r["trace"], duration_s=r["duration_s"])
        vals["max_context"] = int(d.max_context or c.deploy.max_model_len)
        out.append(Load(name=r["name"], rate=r["rate"], seed=int(r["seed"]), **vals))
    return out
